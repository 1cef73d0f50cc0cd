"""What metrics and request logging cost: trivial-query throughput and server CPU per request.

Serves a temporary SQLite database with one uvicorn worker, three ways: with metrics and one JSON log
line per request (the defaults; the log goes to a file), with the log line only (`LICENSING_METRICS=0`:
nothing is recorded), and with both off (also log level `warning`). Each is loaded with
`{ __typename }` over GET for a few seconds by `wrk` (Debian's wrk, if installed; otherwise an httpx
loop, which costs more client CPU on the same cores), rounds alternating, and the best round of each is
kept. Prints requests per second and the server's CPU time per request (user + system, read from
/proc: unlike throughput, it hardly moves when other work shares the cores), and the ratios: metrics
(defaults against log only) and logging (log only against both off). The recording is also timed
alone, in this process: what one request adds (two histogram observations, one error count, one JSON
log line formatted), next to the server's CPU per request.

    .venv/bin/python bench/observability.py [--seconds 5] [--rounds 3] [--connections 8]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
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
from app.observability import CURRENT_REQUEST, JsonLogFormatter, Metrics, RequestRecord

ROOT = Path(__file__).resolve().parents[1]
TRIVIAL_URL = "/graphql?query=%7B__typename%7D"
DEFAULTS, LOG_ONLY, BOTH_OFF = "metrics + JSON request log", "JSON request log only", "both off"
CONFIGS = {
    DEFAULTS: {"LICENSING_METRICS": "1", "LICENSING_LOG_LEVEL": "info"},
    LOG_ONLY: {"LICENSING_METRICS": "0", "LICENSING_LOG_LEVEL": "info"},
    BOTH_OFF: {"LICENSING_METRICS": "0", "LICENSING_LOG_LEVEL": "warning"},
}


def start_server(workdir: Path, port: int, settings: dict[str, str]) -> subprocess.Popen[bytes]:
    env = dict(os.environ, DATABASE_URL=f"sqlite+aiosqlite:///{workdir / 'bench.db'}", PYTHONPATH=str(ROOT))
    env["LICENSING_SANDBOX"] = "1"  # Stripe's public test defaults are fine: the bench never pays
    env.update(settings)
    licensing = [sys.executable, "-m", "app.cli"]
    subprocess.run([*licensing, "migrate"], env=env, cwd=workdir, check=True, capture_output=True)
    with (workdir / f"server-{port}.log").open("wb") as log:
        process = subprocess.Popen(
            [*licensing, "serve", "--port", str(port)], env=env, cwd=workdir, stdout=log, stderr=log
        )
    deadline = time.monotonic() + 120  # a loaded machine takes a while to import everything
    while process.poll() is None and time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    log = (workdir / f"server-{port}.log").read_text()[-2000:]
    raise SystemExit(f"licensing serve did not start:\n{log}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def recording_microseconds(requests: int = 20_000) -> tuple[float, float]:
    """What the instrumentation does for one request, timed in a loop: the metrics (two histogram
    observations, one error count) and the JSON log line, in microseconds per request (best of 5)."""
    metrics = Metrics(lambda: 0, lambda: True)
    formatter = JsonLogFormatter()
    record = logging.LogRecord("licensing.http", logging.INFO, __file__, 0, "request", None, None)
    vars(record).update(method="POST", path="/graphql", status=200, duration_ms=1.25)
    token = CURRENT_REQUEST.set(RequestRecord("0123456789abcdef", "ptr_1", "viewer"))
    recording, logging_ = float("inf"), float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(requests):
            metrics.operation_seconds.labels("query", "viewer").observe(0.004)
            metrics.errors.labels("UNAUTHENTICATED").inc()
            metrics.http_seconds.labels("/graphql", "200").observe(0.005)
        recording = min(recording, 1e6 * (time.perf_counter() - started) / requests)
        started = time.perf_counter()
        for _ in range(requests):
            formatter.format(record)
        logging_ = min(logging_, 1e6 * (time.perf_counter() - started) / requests)
    CURRENT_REQUEST.reset(token)
    return recording, logging_


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    tool = "wrk" if shutil.which("wrk") else "httpx"
    best = dict.fromkeys(CONFIGS, 0.0)
    cpu_ms = dict.fromkeys(CONFIGS, float("inf"))
    with tempfile.TemporaryDirectory() as scratch:
        for _ in range(args.rounds):
            for name, settings in CONFIGS.items():
                port = free_port()
                server = start_server(Path(scratch), port, settings)
                base = f"http://127.0.0.1:{port}"
                try:
                    cpu_before = cpu_seconds(server.pid)
                    if tool == "wrk":
                        rate = wrk_rate(base, args.seconds, args.connections)
                    else:
                        rate = asyncio.run(httpx_rate(base, args.seconds, args.connections))
                    used = cpu_seconds(server.pid) - cpu_before
                    cpu_ms[name] = min(cpu_ms[name], 1000 * used / (rate * args.seconds))
                finally:
                    server.terminate()
                    server.wait(timeout=10)
                best[name] = max(best[name], rate)
    print(
        f"trivial query, {args.connections} connections, {tool}, best of {args.rounds} x {args.seconds:g} s:"
    )
    for name, rate in best.items():
        print(f"  {name:28} {rate:8.0f} req/s   {cpu_ms[name]:6.2f} ms server CPU per request")
    for what, on, off in (("metrics", DEFAULTS, LOG_ONLY), ("request log", LOG_ONLY, BOTH_OFF)):
        print(
            f"  {what}: throughput with / without {best[on] / best[off]:.3f}, server CPU per request "
            f"with / without {cpu_ms[on] / cpu_ms[off]:.3f} ({cpu_ms[on] - cpu_ms[off]:+.3f} ms)"
        )
    recording, log_line = recording_microseconds()
    for what, micros in (("metrics", recording), ("JSON log line", log_line)):
        share = 100 * micros / (1000 * cpu_ms[BOTH_OFF])
        print(f"  {what} alone: {micros:.1f} µs per request = {share:.1f}% of a trivial query's server CPU")


if __name__ == "__main__":
    main()
