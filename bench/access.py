"""Access: validateLicense throughput on one worker, the time from revokeApiToken on one worker to
the token's websocket closing (4403) on another, and the time from a license move (assignLicense) to the
site's licenseStatus message (another worker on PostgreSQL, the same one on SQLite).

Starts real workers (`python -m app.cli serve`, subprocesses). The license checks run against a
temporary SQLite file (and PostgreSQL when DATABASE_URL points at one: use a scratch database) with the
rate limits raised out of the way; the revocation scenario needs two workers, so PostgreSQL only.

    .venv/bin/python bench/access.py [--checks 2000] [--concurrency 16] [--revocations 20] [--moves 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tempfile
import time
from pathlib import Path

import httpx
import websockets
from subscriptions import ISSUE, Partner, on_each_database, percentile, seed_partners, worker

from persistence import migrate

VALIDATE = "query($key: String!, $site: String!) { validateLicense(key: $key, site: $site) { valid reason } }"
ASSIGN = """mutation($key: String!, $site: String!) { assignLicense(input: {key: $key, site: $site}) {
  errors { code } } }"""
CREATE = """mutation { createApiToken(input: {role: READ_ONLY, label: "bench"}) {
  token { id secret } errors { code } } }"""
REVOKE = "mutation($id: ID!) { revokeApiToken(input: {id: $id}) { errors { code } } }"
STATUS = """subscription($key: String!, $site: String!) {
  licenseStatus(key: $key, site: $site) { valid reason change } }"""
SITE = "https://bench-client.example.com"
WATCHED = "https://bench-watched.example.com"  # the licenseStatus scenario's own site (sites are unique)
TRIVIAL = "{ __typename }"


async def post(client: httpx.AsyncClient, query: str, token: str | None = None, **variables: str) -> dict:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    response = await client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
    body: dict = response.json()
    assert "errors" not in body, body
    return body["data"]


async def license_checks(url: str, checks: int, concurrency: int) -> None:
    (partner,) = await seed_partners(url, 1)
    with tempfile.TemporaryDirectory() as logs:
        async with (
            worker(url, Path(logs) / "worker.log") as (_process, address),
            httpx.AsyncClient(base_url=f"http://{address}", timeout=30) as client,
        ):
            key = (await post(client, ISSUE, partner.token))["issueLicenses"]["licenses"][0]["key"]
            await post(client, ASSIGN, partner.token, key=key, site=SITE)
            for label, query in (("validateLicense", VALIDATE), ("floor: { __typename }", TRIVIAL)):
                rate, latencies = await throughput(client, query, checks, concurrency, key=key, site=SITE)
                rate_text = f"{concurrency} concurrent: {rate:.0f} req/s"
                print(f"{label}: {checks} requests, {rate_text}, {spread(latencies)}")


def spread(seconds: list[float]) -> str:
    return f"p50 {percentile(seconds, 50) * 1000:.1f} ms, p99 {percentile(seconds, 99) * 1000:.1f} ms"


async def throughput(
    client: httpx.AsyncClient, query: str, count: int, concurrency: int, **variables: str
) -> tuple[float, list[float]]:
    """Requests per second and each request's latency, `concurrency` clients sharing `count` requests."""
    latencies: list[float] = []
    queue = iter(range(count))
    used = variables if "$" in query else {}

    async def client_loop() -> None:
        for _ in queue:
            sent = time.perf_counter()
            answer = await post(client, query, **used)
            latencies.append(time.perf_counter() - sent)
            assert answer.get("validateLicense", {"valid": True})["valid"], answer

    started = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    return count / (time.perf_counter() - started), latencies


async def revocations(url: str, count: int) -> None:
    (admin,) = await seed_partners(url, 1)
    delays: list[float] = []
    with tempfile.TemporaryDirectory() as logs:
        async with (
            worker(url, Path(logs) / "socket-side.log") as (_first, socket_side),
            worker(url, Path(logs) / "revoke-side.log") as (_second, revoke_side),
            httpx.AsyncClient(base_url=f"http://{revoke_side}", timeout=30) as client,
        ):
            for _ in range(count):
                delays.append(await one_revocation(client, socket_side, admin))
    print(
        f"revokeApiToken on one worker -> 4403 on the other: {count} runs, "
        f"{spread(delays)}, max {max(delays) * 1000:.1f} ms"
    )


async def one_revocation(client: httpx.AsyncClient, socket_side: str, admin: Partner) -> float:
    token = (await post(client, CREATE, admin.token))["createApiToken"]["token"]
    async with websockets.connect(f"ws://{socket_side}/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        payload = {"authorization": f"Bearer {token['secret']}"}
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        sent = time.perf_counter()
        await post(client, REVOKE, admin.token, id=token["id"])
        try:
            while True:
                await asyncio.wait_for(ws.recv(), timeout=5)
        except websockets.ConnectionClosed as closed:
            assert closed.rcvd is not None and closed.rcvd.code == 4403, closed
        return time.perf_counter() - sent


async def status_moves(url: str, count: int) -> None:
    """A site watches its key with licenseStatus (no token); the partner moves the key to another site and
    back: the time from sending assignLicense to the site's message, through another worker on PostgreSQL."""
    (partner,) = await seed_partners(url, 1)
    on_postgres = url.startswith("postgresql")
    delays: list[float] = []
    with tempfile.TemporaryDirectory() as logs:
        async with contextlib.AsyncExitStack() as stack:
            _first, socket_side = await stack.enter_async_context(worker(url, Path(logs) / "site-side.log"))
            write_side = socket_side
            if on_postgres:
                _second, write_side = await stack.enter_async_context(
                    worker(url, Path(logs) / "write-side.log")
                )
            client = await stack.enter_async_context(
                httpx.AsyncClient(base_url=f"http://{write_side}", timeout=30)
            )
            key = (await post(client, ISSUE, partner.token))["issueLicenses"]["licenses"][0]["key"]
            await post(client, ASSIGN, partner.token, key=key, site=WATCHED)
            ws = await stack.enter_async_context(
                websockets.connect(f"ws://{socket_side}/graphql", subprotocols=["graphql-transport-ws"])
            )
            await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            variables = {"key": key, "site": WATCHED}
            await ws.send(
                json.dumps(
                    {"id": "1", "type": "subscribe", "payload": {"query": STATUS, "variables": variables}}
                )
            )
            assert json.loads(await ws.recv())["payload"]["data"]["licenseStatus"]["valid"]
            for run_number in range(count):
                site = WATCHED if run_number % 2 else "https://bench-elsewhere.example.com"
                sent = time.perf_counter()
                await post(client, ASSIGN, partner.token, key=key, site=site)
                while True:
                    message = json.loads(await asyncio.wait_for(ws.recv(), timeout=10))
                    if message["type"] == "next":
                        break
                delays.append(time.perf_counter() - sent)
    where = "another worker" if on_postgres else "the same worker"
    print(f"assignLicense (a move) -> licenseStatus message on {where}: {count} runs, {spread(delays)}")


async def run(url: str, name: str, args: argparse.Namespace) -> None:
    await migrate.upgrade_async(url)
    print(f"== {name}")
    await license_checks(url, args.checks, args.concurrency)
    await status_moves(url, args.moves)
    if url.startswith("postgresql"):
        await revocations(url, args.revocations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--revocations", type=int, default=20)
    parser.add_argument("--moves", type=int, default=20)
    args = parser.parse_args()
    # Measure the check itself, not the limiter refusing it.
    os.environ["LICENSING_LICENSE_CHECKS_PER_ADDRESS"] = "1000000/second"
    os.environ["LICENSING_LICENSE_CHECKS_OVERALL"] = "1000000/second"
    on_each_database(run, args)


if __name__ == "__main__":
    main()
