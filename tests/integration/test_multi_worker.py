"""Two real `licensing serve` processes on one PostgreSQL: a subscriber on one worker receives, in order
and without loss, everything committed through the other, even after its LISTEN connection is killed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
import websockets

from app.demo import DEMO_CATALOG
from app.devstripe import free_port
from domain.access import Role
from domain.standing import StandingEvent
from persistence import migrate
from persistence.database import Database
from persistence.feed import LISTENER_NAME
from persistence.unit_of_work import UnitOfWork
from resolvers.partners import enrol_partner
from resolvers.products import import_catalog
from resolvers.standing import apply_standing_event
from resolvers.tokens import mint_token
from tests.conftest import ON_POSTGRES, POSTGRES_URL, scratch_database_url
from tests.integration.conftest import TEST_FIXTURE, Api, GraphQLSocket
from tests.integration.license_operations import REVOKE, UNASSIGN, assign, fresh_site, issue, mutate
from tests.integration.test_license_status import AT_ONCE, STATUS
from tests.integration.test_subscriptions import LICENSE_EVENTS, auth, connected, event_cursor, items

pytestmark = pytest.mark.skipif(
    not ON_POSTGRES, reason="several workers need PostgreSQL (NOTIFY); SQLite is served by one process"
)

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)


def plain_dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg", "postgresql")


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    address: str


def start_worker(url: str, log: Path) -> Worker:
    port = free_port()
    env = dict(
        os.environ,
        DATABASE_URL=url,
        LICENSING_SANDBOX="1",
        LICENSING_SANDBOX_START=START.isoformat(),
        # A wide reconnect pause, so the test's writes surely land while worker 1 is not listening.
        LICENSING_FEED_RETRY_SECONDS="2",
        PYTHONPATH=str(ROOT),
    )
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            env=env,
            cwd=ROOT,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    return Worker(process, f"127.0.0.1:{port}")


async def wait_until_serving(worker: Worker) -> None:
    # A worker imports the whole service before it serves: on a loaded 2-core machine, over 30 s.
    async with httpx.AsyncClient() as client, asyncio.timeout(90):
        while True:
            assert worker.process.poll() is None, "the worker exited"
            try:
                if (await client.get(f"http://{worker.address}/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)


async def listener_pids(url: str, worker: Worker) -> list[int]:
    """Backends of the worker's feed listener (named per process) that are LISTENing now."""
    connection = await asyncpg.connect(plain_dsn(url))
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1",
            f"{LISTENER_NAME} pid={worker.process.pid}",
        )
    finally:
        await connection.close()
    return [row["pid"] for row in rows]


async def until_listening(url: str, worker: Worker, not_pid: int | None = None) -> int:
    async with asyncio.timeout(30):
        while True:
            pids = [pid for pid in await listener_pids(url, worker) if pid != not_pid]
            if pids:
                return pids[0]
            await asyncio.sleep(0.05)


@dataclass
class Cluster:
    url: str
    subscriber_side: Worker
    mutation_side: Worker
    partner_token: str


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    url = await scratch_database_url(tmp_path)
    workers: list[Worker] = []
    try:
        await migrate.upgrade_async(url)
        database = Database(url)
        try:
            async with UnitOfWork(database) as uow:
                await import_catalog(uow, DEMO_CATALOG)
                partner = await enrol_partner(
                    uow, name="Two Workers", billing_zone="UTC", currency="usd", now=START
                )
                token = await mint_token(uow, partner_id=partner.id, role=Role.ADMIN, label="test", at=START)
            async with UnitOfWork(database, actor=TEST_FIXTURE) as uow:
                await apply_standing_event(
                    uow, partner_id=partner.id, event=StandingEvent.PAYMENT_METHOD_ADDED, at=START
                )
        finally:
            await database.dispose()
        workers = [start_worker(url, tmp_path / f"worker{n}.log") for n in (1, 2)]
        for worker in workers:
            await wait_until_serving(worker)
        yield Cluster(url, workers[0], workers[1], token.secret)
    finally:
        for worker in workers:
            worker.process.terminate()
        for worker in workers:
            worker.process.wait(timeout=15)
        await drop_database(url)


async def drop_database(url: str) -> None:
    name = url.rpartition("/")[2]
    connection = await asyncpg.connect(plain_dsn(POSTGRES_URL))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


async def test_a_subscriber_on_one_worker_gets_every_event_committed_through_the_other(
    cluster: Cluster,
) -> None:
    token = cluster.partner_token
    async with httpx.AsyncClient(base_url=f"http://{cluster.mutation_side.address}", timeout=30) as client:
        other = Api(client)
        since = await event_cursor(other, token)
        async with GraphQLSocket.open(cluster.subscriber_side.address, auth(token)) as socket:
            await connected(socket)
            await socket.subscribe("1", LICENSE_EVENTS, {"since": since})

            keys = await issue(other, token, quantity=3)
            await assign(other, token, keys[0], fresh_site())
            await mutate(other, token, REVOKE, key=keys[1])
            expected = [(key, "issue") for key in keys] + [(keys[0], "assign"), (keys[1], "revoke")]
            before_the_cut = await items(socket, "1", len(expected))

            # Cut worker 1's LISTEN connection, and commit through worker 2 while it is down.
            listener = await until_listening(cluster.url, cluster.subscriber_side)
            connection = await asyncpg.connect(plain_dsn(cluster.url))
            try:
                assert await connection.fetchval("SELECT pg_terminate_backend($1)", listener)
            finally:
                await connection.close()
            await mutate(other, token, UNASSIGN, key=keys[0])
            await mutate(other, token, REVOKE, key=keys[2])
            during_the_gap = [(keys[0], "unassign"), (keys[2], "revoke")]
            caught_up = await items(socket, "1", len(during_the_gap))

            # The worker listens again, and live delivery resumes.
            await until_listening(cluster.url, cluster.subscriber_side, not_pid=listener)
            await mutate(other, token, REVOKE, key=keys[0])
            after_the_cut = await items(socket, "1", 1)

    events = before_the_cut + caught_up + after_the_cut
    assert [(event["key"], event["action"]) for event in events] == [
        *expected,
        *during_the_gap,
        (keys[0], "revoke"),
    ]
    seqs = [event["seq"] for event in events]
    assert seqs == sorted(set(seqs)) == list(range(seqs[0], seqs[0] + len(seqs)))


async def test_revoking_a_token_on_one_worker_closes_its_socket_on_the_other_within_a_second(
    cluster: Cluster,
) -> None:
    token = cluster.partner_token
    async with httpx.AsyncClient(base_url=f"http://{cluster.mutation_side.address}", timeout=30) as client:
        other = Api(client)
        async with GraphQLSocket.open(cluster.subscriber_side.address, auth(token)) as socket:
            await connected(socket)
            await socket.subscribe("1", LICENSE_EVENTS, {"since": await event_cursor(other, token)})
            (token_id,) = [
                t["id"] for t in (await other.data("{ apiTokens { id } }", token=token))["apiTokens"]
            ]
            revoke = "mutation($id: ID!) { revokeApiToken(input: {id: $id}) { errors { code } } }"
            assert (await other.data(revoke, {"id": token_id}, token))["revokeApiToken"]["errors"] == []
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await socket.receive(timeout=1)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_a_site_watching_its_key_on_one_worker_sees_a_move_through_the_other_at_once(
    cluster: Cluster,
) -> None:
    token = cluster.partner_token
    async with httpx.AsyncClient(base_url=f"http://{cluster.mutation_side.address}", timeout=30) as client:
        other = Api(client)
        [key] = await issue(other, token)
        site = fresh_site()
        await assign(other, token, key, site)
        async with GraphQLSocket.open(cluster.subscriber_side.address, {}) as socket:  # no token
            await connected(socket)
            await socket.subscribe("1", STATUS, {"key": key, "site": site})
            now = (await socket.receive())["payload"]["data"]["licenseStatus"]
            await assign(other, token, key, fresh_site("elsewhere"))
            moved = (await socket.receive(timeout=AT_ONCE))["payload"]["data"]["licenseStatus"]
    assert (now["valid"], now["change"]) == (True, None)
    assert (moved["valid"], moved["reason"], moved["change"]) == (False, "WRONG_SITE", "MOVED")
