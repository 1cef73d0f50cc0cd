"""Requests per second through uvicorn (one worker) with `wrk`, against a floor measured in the same run.

Three servers, measured one at a time, several rounds (the machine is shared, so read the ratios):
- the floor: bench/minimal_app.py, a minimal Strawberry app with ParserCache and ValidationCache
  answering `{ support { email } }` from memory;
- `licensing serve` on a temporary SQLite file, answering the same query, and the dashboard query
  (viewer with standing, licenseCounts, billingEstimate totals) for a partner holding 500 licenses.

Needs `wrk` (Debian: `apt-get install wrk`). The file is not called http.py: run as a script, bench/
comes first on sys.path and would shadow the standard library's `http`.

    .venv/bin/python bench/http_requests.py [--rounds 5] [--seconds 3] [--connections 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from licenses_page import START, seed

from persistence import migrate
from persistence.database import Database
from persistence.unit_of_work import UnitOfWork
from resolvers.tokens import mint_token

ROOT = Path(__file__).resolve().parents[1]
TRIVIAL = "{ support { email } }"
DASHBOARD = """{ viewer { id name standing { state allowedActions } }
  licenseCounts { issued assigned revoked transferred notRevoked all }
  billingEstimate { month licenseDays
    costs { assigned { amount } unassigned { amount } total { amount } } } }"""
WRK_SCRIPT = """wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
{auth}
"""


async def seed_partner(url: str, licenses: int) -> str:
    """A partner holding `licenses` licenses; returns its API token."""
    database = Database(url)
    try:
        partner_id = await seed(database, licenses)
        async with UnitOfWork(database) as uow:
            token = await mint_token(uow, partner_id=partner_id, staff=False, label="bench", at=START)
        assert token.secret is not None
        return token.secret
    finally:
        await database.dispose()


@contextmanager
def server(command: list[str], env: dict[str, str], port: int) -> Iterator[str]:
    """Start a server, wait until it answers, stop it afterwards."""
    quiet = subprocess.DEVNULL
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=quiet, stderr=quiet)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.post(f"{base}/graphql", json={"query": TRIVIAL}, timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.05)
        else:
            raise SystemExit(f"{command} did not start")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


def check_answers(base: str, query: str, token: str | None) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = httpx.post(f"{base}/graphql", json={"query": query}, headers=headers, timeout=30).json()
    if body.get("errors"):
        raise SystemExit(f"{query!r} answered errors: {body['errors']}")


def requests_per_second(
    base: str, query: str, token: str | None, seconds: int, connections: int, workdir: Path
) -> float:
    auth = f'wrk.headers["Authorization"] = "Bearer {token}"' if token else ""
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT.format(body=json.dumps(json.dumps({"query": query})), auth=auth))
    output = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), f"{base}/graphql"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in output:
        raise SystemExit(f"wrk saw non-2xx answers:\n{output}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    assert match, output
    return float(match.group(1))


def spread(values: list[float]) -> str:
    return f"{min(values):8.0f} to {max(values):8.0f} (median {statistics.median(values):.0f})"


def main(rounds: int, seconds: int, connections: int, licenses: int) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        migrate.upgrade(url)
        token = asyncio.run(seed_partner(url, licenses))
        # Sandbox mode: the bench has no Stripe secrets of its own (no payment is made).
        env = dict(os.environ, DATABASE_URL=url, PYTHONPATH=str(ROOT), LICENSING_SANDBOX="1")
        floor_port, service_port = 18_500 + os.getpid() % 500, 19_000 + os.getpid() % 500
        floor_cmd = [python, "-m", "uvicorn", "--app-dir", "bench", "minimal_app:app"]
        floor_cmd += ["--port", str(floor_port)]
        service_cmd = [python, "-m", "app.cli", "serve", "--port", str(service_port)]
        floor: list[float] = []
        trivial: list[float] = []
        dashboard: list[float] = []
        print(f"wrk: 1 thread, {connections} connections, {seconds:g} s per measure, {rounds} rounds")
        with server(floor_cmd, env, floor_port) as floor_base, server(service_cmd, env, service_port) as base:
            check_answers(base, DASHBOARD, token)
            for _ in range(rounds):
                # Back to back within a round, so each ratio compares the same moment of a busy machine.
                floor.append(requests_per_second(floor_base, TRIVIAL, None, seconds, connections, workdir))
                trivial.append(requests_per_second(base, TRIVIAL, token, seconds, connections, workdir))
                dashboard.append(requests_per_second(base, DASHBOARD, token, seconds, connections, workdir))
        print(f"floor: minimal Strawberry app, {TRIVIAL:<22} req/s {spread(floor)}")
        print(f"service, {TRIVIAL:<40} req/s {spread(trivial)}")
        print(f"service, dashboard ({licenses} licenses)              req/s {spread(dashboard)}")
        trivial_ratios = [t / f for t, f in zip(trivial, floor, strict=True)]
        dashboard_ratios = [d / f for d, f in zip(dashboard, floor, strict=True)]
        print(f"trivial / floor, per round:   {', '.join(f'{r:.2f}' for r in trivial_ratios)} (goal ≥ 0.90)")
        print(f"dashboard / floor, per round: {', '.join(f'{r:.3f}' for r in dashboard_ratios)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--licenses", type=int, default=500)
    arguments = parser.parse_args()
    main(arguments.rounds, arguments.seconds, arguments.connections, arguments.licenses)
