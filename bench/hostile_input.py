"""Hostile input against a real `licensing serve` (uvicorn, one worker, a temporary SQLite file).

Prints how long the server takes to refuse the fragment bomb (`F_i = ...F_(i-1) ...F_(i-1)`) at
n = 20, 40 and 1,000 fragments, next to a trivial query as the floor, and the latency of /healthz
while 4 clients send bombs back to back, as a ratio to /healthz on an idle server.

    .venv/bin/python bench/hostile_input.py [--runs 50] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
TRIVIAL = "{ __typename }"


def fragment_bomb(n: int) -> str:
    spreads = " ".join(f"fragment F{i} on Query {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, n + 1))
    return f"query {{ ...F{n} }} fragment F0 on Query {{ __typename }} {spreads}"


def start_server(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    # Sandbox mode: the server refuses the public Stripe defaults otherwise (no payments happen here).
    env = dict(
        os.environ,
        DATABASE_URL=f"sqlite+aiosqlite:///{workdir / 'bench.db'}",
        LICENSING_SANDBOX="1",
        PYTHONPATH=str(ROOT),
    )
    env["LICENSING_LOG_LEVEL"] = "warning"  # one log line per request would print thousands of lines
    licensing = [sys.executable, "-m", "app.cli"]
    subprocess.run([*licensing, "migrate"], env=env, cwd=workdir, check=True, capture_output=True)
    return subprocess.Popen(
        [*licensing, "serve", "--port", str(port)], env=env, cwd=workdir, stdout=subprocess.DEVNULL
    )


async def wait_until_healthy(client: httpx.AsyncClient) -> None:
    for _ in range(200):
        try:
            if (await client.get("/healthz")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.05)
    raise SystemExit("licensing serve did not start")


async def timed_post(client: httpx.AsyncClient, query: str) -> tuple[float, str]:
    started = time.perf_counter()
    response = await client.post("/graphql", json={"query": query})
    elapsed = time.perf_counter() - started
    body = response.json()
    code = body["errors"][0]["extensions"]["code"] if body.get("errors") else "ok"
    return elapsed, code


async def refusal_times(client: httpx.AsyncClient, runs: int) -> None:
    floor = statistics.median([(await timed_post(client, TRIVIAL))[0] for _ in range(runs)])
    print(f"trivial query `{TRIVIAL}`: median {floor * 1000:.2f} ms (the floor)")
    for n in (20, 40, 1_000):
        document = fragment_bomb(n)
        samples = [await timed_post(client, document) for _ in range(runs)]
        median = statistics.median(s for s, _ in samples)
        worst = max(s for s, _ in samples)
        codes = {c for _, c in samples}
        print(
            f"fragment bomb n={n:>5} ({len(document):>6} bytes): median {median * 1000:6.2f} ms, "
            f"max {worst * 1000:6.2f} ms, {median / floor:4.1f}x the floor, answered {sorted(codes)}"
        )


async def healthz_latencies(client: httpx.AsyncClient, seconds: float) -> list[float]:
    latencies = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        await client.get("/healthz")
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(0.01)
    return latencies


def sender(base: str, query: str, seconds: float) -> int:
    """One client sending `query` back to back, in its own process so it does not slow the prober."""
    sent = 0
    deadline = time.perf_counter() + seconds
    with httpx.Client(base_url=base, timeout=30) as client:
        while time.perf_counter() < deadline:
            client.post("/graphql", json={"query": query})
            sent += 1
    return sent


async def healthz_under(
    base: str, client: httpx.AsyncClient, query: str, seconds: float
) -> tuple[list[float], int]:
    """/healthz latencies while 4 clients send `query` as fast as the server answers."""
    with concurrent.futures.ProcessPoolExecutor(4) as pool:
        senders = [pool.submit(sender, base, query, seconds + 1) for _ in range(4)]
        await asyncio.sleep(0.5)
        latencies = await healthz_latencies(client, seconds)
        return latencies, sum(s.result() for s in senders)


def describe(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    p50 = ordered[len(ordered) // 2]
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    worst = ordered[-1]
    spread = f"p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms, max {worst * 1000:.2f} ms"
    return f"{spread} ({len(ordered)} probes)"


async def main(runs: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        port = 18_000 + os.getpid() % 1_000
        server = start_server(Path(tmp), port)
        base = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(base_url=base, timeout=30) as client:
                await wait_until_healthy(client)
                await refusal_times(client, runs)
                idle = await healthz_latencies(client, seconds)
                busy, answered = await healthz_under(base, client, TRIVIAL, seconds)
                bombed, refused = await healthz_under(base, client, fragment_bomb(40), seconds)
            print(f"/healthz idle:                                  {describe(idle)}")
            print(f"/healthz, 4 clients sending `{TRIVIAL}`:      {describe(busy)}; {answered} answered")
            print(f"/healthz, 4 clients sending the n=40 bomb:     {describe(bombed)}; {refused} refused")
            ratio = statistics.median(bombed) / statistics.median(busy)
            print(
                f"/healthz p50 under bombs / under trivial queries: {ratio:.2f}x (1.0: a bomb costs no more)"
            )
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.runs, arguments.seconds))
