"""`licensing serve` with each of its garbage collections logged, for bench/subscriptions.py.

    .venv/bin/python bench/gc_log.py LOG_FILE serve --port 8000

Each collection is one line of LOG_FILE: when it started (time.monotonic(), seconds), its generation,
how long it took (ms) and the objects it found unreachable. CLOCK_MONOTONIC is one clock for every
process of a machine, so the bench can line collections up with the deliveries it timed.
"""

from __future__ import annotations

import gc
import sys
import time
from typing import Any


def log_collections(path: str) -> None:
    log = open(path, "a", buffering=1)  # noqa: SIM115 (open for the process's life)
    started = [0.0]

    def record(phase: str, info: dict[str, Any]) -> None:
        now = time.monotonic()
        if phase == "start":
            started[0] = now
            return
        duration_ms = 1000 * (now - started[0])
        log.write(f"{started[0]:.6f} {info['generation']} {duration_ms:.3f} {info['collected']}\n")

    gc.callbacks.append(record)


def collections_between(path: str, start: float, end: float) -> list[tuple[float, int, float, int]]:
    """The logged collections that started in [start, end]: (started, generation, ms, collected)."""
    found = []
    with open(path) as log:
        for line in log:
            at, generation, duration_ms, collected = line.split()
            if start <= float(at) <= end:
                found.append((float(at), int(generation), float(duration_ms), int(collected)))
    return found


if __name__ == "__main__":
    log_collections(sys.argv[1])
    from app.cli import main

    sys.exit(main(sys.argv[2:]))
