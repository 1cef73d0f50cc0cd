"""Subscriptions under load: websocket subscribers on one worker, latency from a mutation to delivery.

Starts one real worker (`python -m app.cli serve`, a subprocess) on a temporary SQLite file (and on
PostgreSQL when DATABASE_URL points at one: use a scratch database), opens the subscribers from this
process over loopback (`licenseEvents` with a cursor; at most OPENING at a time, as clients reconnecting
after a deploy would), then issues licenses one at a time through HTTP and times each delivery from the
moment the mutation was sent (an upper bound on commit → delivery: it includes the mutation's own work;
its round trip alone is printed for comparison). Two scenarios, each against its goal (issue 14):

- one partner: 1,000 subscribers of one partner, every mutation fans out to all of them (p99 ≤ 250 ms);
- spread: 10,000 subscribers over 100 partners, a mutation reaches one partner's 100 (p99 ≤ 500 ms).

Memory per idle subscriber is the worker's RSS growth (from /proc) divided by the number of subscribers
(goal ≤ 40 KiB). Executions per event come from the worker's own counter on /metrics
(`licensing_subscription_executions_total`: how often a subscription's selection ran for an event),
divided by the events the mutations made; with one shared execution per distinct (document, variables,
event, caller scope) it is 1 however many subscribers share it.

    .venv/bin/python bench/subscriptions.py [--subscribers 1000] [--spread-subscribers 10000]
        [--partners 100] [--mutations 20] [--only one|spread]

BENCH_WORKER_LOG=/tmp/worker.log keeps the worker's log (otherwise it goes with a temporary folder).
The worker runs under bench/gc_log.py: each of its garbage collections is logged (to the worker log's
name + ".gc"), and the bench prints those made while the sockets opened, while the mutations were
delivered, and during the slowest mutation. The load average is printed with each result.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import websockets
from gc_log import collections_between

from app.demo import DEMO_CATALOG
from domain.access import Role
from domain.actors import Actor, SystemJob
from domain.standing import StandingEvent
from persistence import migrate
from persistence.database import Database
from persistence.unit_of_work import UnitOfWork
from resolvers.partners import enrol_partner
from resolvers.products import import_catalog
from resolvers.standing import apply_standing_event
from resolvers.tokens import mint_token

ROOT = Path(__file__).resolve().parents[1]
START = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
SUBSCRIBE = "subscription($since: String) { licenseEvents(since: $since) { key seq action toState } }"
ISSUE = """mutation { issueLicenses(input: {items: [{productSlug: "jetpack-backup", quantity: 1}]}) {
  licenses { key } errors { code } } }"""
CURSOR = "{ eventCursor }"
WAIT_SECONDS = 120
# Sockets opening at once (each costs the worker a token lookup and a subscribe).
OPENING = 32
EXECUTIONS = "licensing_subscription_executions_total"
MEMORY_GOAL_KIB = 40


@dataclass
class Partner:
    id: str
    token: str
    cursor: str = ""


@dataclass
class Arrivals:
    """When each license key's event reached each subscriber (perf_counter seconds)."""

    times: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, key: str) -> None:
        self.times[key].append(time.perf_counter())
        self.changed.set()

    async def wait_for(self, key: str, count: int) -> list[float]:
        async with asyncio.timeout(WAIT_SECONDS):
            while len(self.times[key]) < count:
                self.changed.clear()
                await self.changed.wait()
        return self.times[key]


async def all_opened(tasks: list[asyncio.Task[None]], opened: list[int], count: int) -> None:
    """Until every subscriber has sent its subscribe (however long opening takes); fail if one failed."""
    while len(opened) < count:
        for task in tasks:
            if task.done() and task.exception() is not None:
                raise RuntimeError("a subscriber failed while opening") from task.exception()
        await asyncio.sleep(0.5)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(samples: list[float], p: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[p - 1] if len(samples) > 1 else samples[0]


async def executions(client: httpx.AsyncClient) -> float | None:
    """The worker's count of subscription selections executed so far (None: it has no such counter)."""
    text = (await client.get("/metrics")).text
    total = None
    for line in text.splitlines():
        if line.startswith(EXECUTIONS):
            total = (total or 0.0) + float(line.rsplit(" ", 1)[1])
    return total


async def seed_partners(url: str, count: int) -> list[Partner]:
    database = Database(url)
    made = []
    try:
        async with UnitOfWork(database) as uow:
            await import_catalog(uow, DEMO_CATALOG)
        for number in range(count):
            async with UnitOfWork(database, actor=Actor.system(SystemJob("bench"))) as uow:
                partner = await enrol_partner(
                    uow, name=f"Bench Agency {number}", billing_zone="UTC", currency="usd", now=START
                )
                token = await mint_token(uow, partner_id=partner.id, role=Role.ADMIN, label="bench", at=START)
                await apply_standing_event(
                    uow, partner_id=partner.id, event=StandingEvent.PAYMENT_METHOD_ADDED, at=START
                )
            made.append(Partner(partner.id, token.secret))
    finally:
        await database.dispose()
    return made


@contextlib.asynccontextmanager
async def worker(
    url: str, log: Path, *, floor: bool = False
) -> AsyncIterator[tuple[subprocess.Popen[bytes], str]]:
    """`licensing serve` on a free port (or, `floor`, bench/broadcast_app.py under the same uvicorn)."""
    port = free_port()
    env = dict(os.environ, DATABASE_URL=url, LICENSING_SANDBOX="1", PYTHONPATH=str(ROOT))
    env["LICENSING_SANDBOX_START"] = START.isoformat()
    # Its garbage collections are logged (bench/gc_log.py) to line them up with late deliveries.
    command = [sys.executable, str(ROOT / "bench" / "gc_log.py"), str(gc_log_of(log)), "serve"]
    command += ["--port", str(port)]
    if floor:
        command = [sys.executable, "-m", "uvicorn", "--app-dir", "bench", "broadcast_app:app"]
        command += ["--port", str(port), "--ws-per-message-deflate", "false", "--log-level", "warning"]
    with log.open("wb") as output:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    address = f"127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as client, asyncio.timeout(WAIT_SECONDS):
            while True:
                if process.poll() is not None:  # e.g. its port was taken after free_port() chose it
                    raise SystemExit(f"{' '.join(command)} exited ({process.returncode}); see {log}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"http://{address}/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        yield process, address
    finally:
        process.terminate()
        process.wait(timeout=30)


def gc_log_of(worker_log: Path) -> Path:
    return worker_log.with_name(worker_log.name + ".gc")


def describe_collections(found: list[tuple[float, int, float, int]]) -> str:
    if not found:
        return "none"
    parts = []
    for generation in (0, 1, 2):
        times = [duration for _, gen, duration, _ in found if gen == generation]
        if times:
            parts.append(f"gen{generation}: {len(times)} (longest {max(times):.1f} ms)")
    return ", ".join(parts)


async def subscriber(
    address: str, partner: Partner, arrivals: Arrivals, ready: asyncio.Semaphore, opened: list[int]
) -> None:
    async with ready:
        ws = await websockets.connect(
            f"ws://{address}/graphql",
            subprotocols=["graphql-transport-ws"],
            max_queue=None,  # type: ignore[list-item]
            # The server pings (uvicorn, every 20 s); the measuring client does not add its own.
            ping_interval=None,
            open_timeout=WAIT_SECONDS,
        )
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"authorization": f"Bearer {partner.token}"}})
        )
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        payload = {"query": SUBSCRIBE, "variables": {"since": partner.cursor}}
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
        opened.append(1)
    try:
        async for raw in ws:
            message = json.loads(raw)
            if message["type"] == "next":
                arrivals.record(message["payload"]["data"]["licenseEvents"]["key"])
            elif message["type"] == "ping":
                await ws.send(json.dumps({"type": "pong"}))
            elif message["type"] in {"error", "complete"}:
                raise RuntimeError(f"subscription ended: {message}")
    finally:
        await ws.close()


async def issue_one(client: httpx.AsyncClient, partner: Partner) -> str:
    response = await client.post(
        "/graphql", json={"query": ISSUE}, headers={"Authorization": f"Bearer {partner.token}"}
    )
    payload = response.json()["data"]["issueLicenses"]
    assert payload["errors"] == [], payload
    key: str = payload["licenses"][0]["key"]
    return key


async def floor(subscribers: int, partner_count: int, mutations: int) -> tuple[float, float]:
    """The same subscribers and fan-out on bench/broadcast_app.py: p99 send → delivery (seconds), and
    the floor worker's RSS growth per idle socket (KiB)."""
    groups = [Partner(f"floor-{n}", "floor", cursor=f"g{n}") for n in range(partner_count)]
    shares = [groups[n % partner_count] for n in range(subscribers)]
    with tempfile.TemporaryDirectory() as scratch:
        async with (
            worker("", Path(scratch) / "floor.log", floor=True) as (process, address),
            httpx.AsyncClient(base_url=f"http://{address}", timeout=60) as client,
        ):
            await client.post("/fire", params={"group": "warm-up"})
            idle_before = rss_kib(process.pid)
            arrivals = Arrivals()
            opening = asyncio.Semaphore(OPENING)
            opened: list[int] = []
            tasks = [asyncio.create_task(subscriber(address, g, arrivals, opening, opened)) for g in shares]
            per_group = {g.cursor: sum(1 for s in shares if s is g) for g in groups}
            await all_opened(tasks, opened, subscribers)
            # The fence: every subscriber registered (the floor does not replay what it missed).
            for group in groups:
                while True:
                    fired = (await client.post("/fire", params={"group": group.cursor})).json()
                    if fired["sent"] == per_group[group.cursor]:
                        await arrivals.wait_for(fired["key"], per_group[group.cursor])
                        break
                    await asyncio.sleep(0.2)
            await asyncio.sleep(1)
            per_socket_kib = (rss_kib(process.pid) - idle_before) / subscribers
            latencies: list[float] = []
            for _ in range(mutations):
                sent = time.perf_counter()
                key = (await client.post("/fire", params={"group": groups[0].cursor})).json()["key"]
                times = await arrivals.wait_for(key, per_group[groups[0].cursor])
                latencies += [arrived - sent for arrived in times]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return percentile(latencies, 99), per_socket_kib


async def scenario(
    url: str, label: str, subscribers: int, partner_count: int, mutations: int, goal_ms: float
) -> None:
    partners = await seed_partners(url, partner_count)
    with tempfile.TemporaryDirectory() as scratch:
        worker_log = Path(os.environ.get("BENCH_WORKER_LOG") or Path(scratch) / "worker.log")
        async with (
            worker(url, worker_log) as (process, address),
            httpx.AsyncClient(base_url=f"http://{address}", timeout=60) as client,
        ):
            for partner in partners:
                answer = await client.post(
                    "/graphql", json={"query": CURSOR}, headers={"Authorization": f"Bearer {partner.token}"}
                )
                partner.cursor = answer.json()["data"]["eventCursor"]
            alone = []
            for _ in range(5):
                sent = time.perf_counter()
                await issue_one(client, partners[0])
                alone.append(time.perf_counter() - sent)
            # Baseline after the worker has served both kinds of request once.
            idle_before = rss_kib(process.pid)
            client_before = rss_kib(os.getpid())

            arrivals = Arrivals()
            opened: list[int] = []
            shares = [partners[n % partner_count] for n in range(subscribers)]
            connect_started = time.perf_counter()
            opening_started = time.monotonic()
            opening = asyncio.Semaphore(OPENING)
            tasks = [
                asyncio.create_task(subscriber(address, share, arrivals, opening, opened)) for share in shares
            ]
            per_partner = {p.id: sum(1 for s in shares if s is p) for p in partners}
            await all_opened(tasks, opened, subscribers)
            # The fence: one mutation per partner reaches every subscriber, so all of them are live.
            for partner in partners:
                key = await issue_one(client, partner)
                await arrivals.wait_for(key, per_partner[partner.id])
            connect_seconds = time.perf_counter() - connect_started
            await asyncio.sleep(1)
            idle_after = rss_kib(process.pid)
            client_after = rss_kib(os.getpid())

            opening_ended = time.monotonic()
            target = partners[0]
            latencies: list[float] = []
            last_deliveries: list[float] = []
            windows: list[tuple[float, float]] = []  # each mutation: sent → last delivery (monotonic)
            executed_before = await executions(client)
            server_cpu = cpu_seconds(process.pid)
            client_cpu = resource.getrusage(resource.RUSAGE_SELF)
            phase_started = time.perf_counter()
            for _ in range(mutations):
                sent = time.perf_counter()
                sent_at = time.monotonic()
                key = await issue_one(client, target)
                times = await arrivals.wait_for(key, per_partner[target.id])
                samples = [arrived - sent for arrived in times]
                latencies += samples
                last_deliveries.append(max(samples))
                windows.append((sent_at, sent_at + max(samples)))
            phase_seconds = time.perf_counter() - phase_started
            server_cpu = cpu_seconds(process.pid) - server_cpu
            executed_after = await executions(client)
            client_usage = resource.getrusage(resource.RUSAGE_SELF)
            client_cpu_seconds = (client_usage.ru_utime - client_cpu.ru_utime) + (
                client_usage.ru_stime - client_cpu.ru_stime
            )
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            gc_log = gc_log_of(worker_log)
            opening_collections = collections_between(gc_log, opening_started, opening_ended)
            mutation_collections = collections_between(gc_log, windows[0][0], windows[-1][1])
            slowest = max(range(len(windows)), key=lambda n: last_deliveries[n])
            during_slowest = collections_between(gc_log, *windows[slowest])

    fanout = per_partner[target.id]
    deliveries = len(latencies)
    p99 = 1000 * percentile(latencies, 99)
    per_subscriber_kib = (idle_after - idle_before) / subscribers
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"\n  {label}: {subscribers} subscribers over {partner_count} partner(s); {fanout} per mutation")
    print(f"    load average at the end of the run: {load}")
    print(f"    opened and confirmed live in {connect_seconds:.1f} s")
    print(
        f"    mutation alone (no subscribers): p50 {1000 * statistics.median(alone):.1f} ms"
        f"   ·   send → delivery over {mutations} mutations ({deliveries} deliveries):"
    )
    print(
        f"    p50 {1000 * percentile(latencies, 50):.1f} ms   p99 {p99:.1f} ms"
        f"   max {1000 * max(latencies):.1f} ms   (goal p99 ≤ {goal_ms:.0f} ms: "
        f"{'met' if p99 <= goal_ms else 'missed'})"
    )
    print(
        "    last delivery of a mutation, median over mutations: "
        f"{1000 * statistics.median(last_deliveries):.1f} ms"
    )
    print(
        f"    worker RSS {idle_before / 1024:.1f} → {idle_after / 1024:.1f} MiB: "
        f"{per_subscriber_kib:.1f} KiB per idle subscriber (goal ≤ {MEMORY_GOAL_KIB} KiB: "
        f"{'met' if per_subscriber_kib <= MEMORY_GOAL_KIB else 'missed'})"
        f"   (client: {(client_after - client_before) / subscribers:.1f} KiB per socket)"
    )
    if executed_before is None or executed_after is None:
        print(f"    executions per event: not counted by this worker (no {EXECUTIONS} on /metrics)")
    else:
        ran = executed_after - executed_before
        print(
            f"    executions per event: {ran / mutations:.2f} ({ran:.0f} selections run for {mutations} "
            f"events delivered {deliveries} times; without sharing: {fanout} per event)"
        )
    print(
        f"    CPU during the mutations ({phase_seconds:.1f} s wall): worker {server_cpu:.1f} s "
        f"({1e6 * server_cpu / max(deliveries, 1):.0f} µs per delivery), "
        f"client {client_cpu_seconds:.1f} s "
        f"({1e6 * client_cpu_seconds / max(deliveries, 1):.0f} µs per receipt)",
        flush=True,
    )
    print(f"    worker's garbage collections while opening: {describe_collections(opening_collections)}")
    print(
        f"    while the mutations were delivered: {describe_collections(mutation_collections)}; "
        f"during the slowest mutation ({1000 * last_deliveries[slowest]:.1f} ms to its last delivery): "
        f"{describe_collections(during_slowest)}",
        flush=True,
    )
    floor_p99, floor_kib = await floor(subscribers, partner_count, mutations)
    floor_ms = 1000 * floor_p99
    print(
        f"    floor (bench/broadcast_app.py: the same sockets and fan-out, one message serialized once, "
        f"no GraphQL): p99 {floor_ms:.1f} ms, {floor_kib:.1f} KiB per idle socket; service / floor: "
        f"p99 {p99 / floor_ms:.2f}, memory {per_subscriber_kib / max(floor_kib, 0.1):.2f}; load average "
        + " ".join(f"{value:.2f}" for value in os.getloadavg()),
        flush=True,
    )


async def run(url: str, name: str, args: argparse.Namespace) -> None:
    await migrate.upgrade_async(url)
    print(f"== {name}")
    if args.only in (None, "one"):
        await scenario(url, "one partner", args.subscribers, 1, args.mutations, goal_ms=250)
    if args.only in (None, "spread"):
        await scenario(url, "spread", args.spread_subscribers, args.partners, args.mutations, goal_ms=500)


def main() -> None:
    global OPENING
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=1000, help="in the one-partner scenario")
    parser.add_argument("--spread-subscribers", type=int, default=10000, help="in the spread scenario")
    parser.add_argument("--partners", type=int, default=100, help="partners in the spread scenario")
    parser.add_argument("--mutations", type=int, default=20)
    parser.add_argument("--only", choices=["one", "spread"], help="run one scenario only")
    parser.add_argument("--skip-sqlite", action="store_true", help="PostgreSQL only (DATABASE_URL)")
    parser.add_argument("--opening", type=int, default=OPENING, help="sockets opening at once")
    args = parser.parse_args()
    OPENING = args.opening
    # One socket each in this process and in the worker (which inherits the limit), plus spare.
    sockets = max(args.subscribers, args.spread_subscribers)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, sockets + 1024)), hard))
    on_each_database(run, args)


def on_each_database(
    scenario: Callable[[str, str, argparse.Namespace], Awaitable[None]], args: argparse.Namespace
) -> None:
    """Run on a temporary SQLite file, then on PostgreSQL when DATABASE_URL names a (scratch) one."""
    if not getattr(args, "skip_sqlite", False):
        with tempfile.TemporaryDirectory() as directory:
            asyncio.run(scenario(f"sqlite+aiosqlite:///{Path(directory) / 'bench.db'}", "SQLite", args))
    postgres = os.environ.get("DATABASE_URL", "")
    if postgres.startswith("postgresql"):
        asyncio.run(scenario(postgres, "PostgreSQL", args))


if __name__ == "__main__":
    main()
