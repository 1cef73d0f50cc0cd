"""What metrics and request logging cost: trivial-query throughput of a real `licensing serve`.

Serves a temporary SQLite database with one uvicorn worker, twice: with /metrics and one JSON log line
per request (the defaults; the log goes to a file), and with both off (`LICENSING_METRICS=0`, log level
`warning`). Each is loaded with `{ __typename }` over GET for a few seconds by `wrk` (Debian's wrk,
if installed; otherwise an httpx loop, which costs more client CPU on the same cores), rounds
alternating, and the best round of each is kept. Prints requests per second and the ratio.

    .venv/bin/python bench/observability.py [--seconds 5] [--rounds 3] [--connections 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from app.devstripe import free_port

ROOT = Path(__file__).resolve().parents[1]
TRIVIAL_URL = "/graphql?query=%7B__typename%7D"
CONFIGS = {
    "metrics + JSON request log": {"LICENSING_METRICS": "1", "LICENSING_LOG_LEVEL": "info"},
    "both off": {"LICENSING_METRICS": "0", "LICENSING_LOG_LEVEL": "warning"},
}


def start_server(workdir: Path, port: int, settings: dict[str, str]) -> subprocess.Popen[bytes]:
    env = dict(os.environ, DATABASE_URL=f"sqlite+aiosqlite:///{workdir / 'bench.db'}", PYTHONPATH=str(ROOT))
    env.update(settings)
    licensing = [sys.executable, "-m", "app.cli"]
    subprocess.run([*licensing, "migrate"], env=env, cwd=workdir, check=True, capture_output=True)
    with (workdir / f"server-{port}.log").open("wb") as log:
        process = subprocess.Popen(
            [*licensing, "serve", "--port", str(port)], env=env, cwd=workdir, stdout=log, stderr=log
        )
    for _ in range(200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("licensing serve did not start")


def wrk_rate(base: str, seconds: float, connections: int) -> float:
    done = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", base + TRIVIAL_URL],
        capture_output=True,
        text=True,
        check=True,
    )
    if "Non-2xx" in done.stdout:
        raise SystemExit(f"some answers were errors:\n{done.stdout}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    assert found, done.stdout
    return float(found.group(1))


async def httpx_rate(base: str, seconds: float, connections: int) -> float:
    answered = 0
    deadline = time.perf_counter() + seconds

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal answered
        while time.perf_counter() < deadline:
            (await client.get(TRIVIAL_URL)).raise_for_status()
            answered += 1

    async with httpx.AsyncClient(base_url=base) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(connections)))
    return answered / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    tool = "wrk" if shutil.which("wrk") else "httpx"
    best = dict.fromkeys(CONFIGS, 0.0)
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(args.rounds):
            for name, settings in CONFIGS.items():
                port = free_port()
                server = start_server(Path(scratch), port, settings)
                base = f"http://127.0.0.1:{port}"
                try:
                    if tool == "wrk":
                        rate = wrk_rate(base, args.seconds, args.connections)
                    else:
                        rate = asyncio.run(httpx_rate(base, args.seconds, args.connections))
                finally:
                    server.terminate()
                    server.wait(timeout=10)
                best[name] = max(best[name], rate)
    print(
        f"trivial query, {args.connections} connections, {tool}, best of {args.rounds} x {args.seconds:g} s:"
    )
    for name, rate in best.items():
        print(f"  {name:28} {rate:8.0f} req/s")
    on, off = best["metrics + JSON request log"], best["both off"]
    print(f"  cost of metrics + logging: {100 * (1 - on / off):.1f}% of throughput (ratio {on / off:.3f})")


if __name__ == "__main__":
    main()
