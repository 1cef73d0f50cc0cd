"""GraphQL over HTTP against the real app, database and clock."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import websockets
from starlette.applications import Starlette

from app.demo import DEMO_CATALOG
from app.devstripe import LocalStripe, free_port
from app.http import create_app
from app.settings import Settings
from domain.access import Role
from domain.actors import Actor, SystemJob
from domain.clock import SettableClock
from domain.standing import StandingEvent
from payments.stripe_gateway import StripeGateway
from persistence.database import Database
from persistence.tokens import TOKEN_SIGNAL_PREFIX
from persistence.unit_of_work import UnitOfWork
from resolvers.products import import_catalog
from resolvers.standing import apply_standing_event
from resolvers.tokens import mint_token
from tests.memory_gateway import InMemoryGateway


@dataclass
class Api:
    """A GraphQL client: `call` returns the JSON body, `data` asserts there were no errors."""

    client: httpx.AsyncClient

    async def call(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        response = await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=sent
        )
        body: dict[str, Any] = response.json()
        return body

    async def data(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        body = await self.call(query, variables, token)
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data


@pytest.fixture(scope="session")
async def catalog(database: Database) -> None:
    async with UnitOfWork(database) as uow:
        await import_catalog(uow, DEMO_CATALOG)


# What tests set up behind the API's back (a standing moved directly) is recorded as this job's work.
TEST_FIXTURE = Actor.system(SystemJob("test-fixture"))

STRIPE_API_KEY = "sk_test_licensing"
STRIPE_WEBHOOK_SECRET = "whsec_licensing_tests"


def own_secrets(**settings: Any) -> Settings:
    """Settings outside sandbox mode need Stripe secrets of their own (the public defaults are refused)."""
    return Settings(stripe_api_key=STRIPE_API_KEY, stripe_webhook_secret=STRIPE_WEBHOOK_SECRET, **settings)


def stripe_settings(database_url: str, localstripe: LocalStripe) -> Settings:
    return Settings(
        database_url=database_url,
        sandbox=True,
        stripe_api_key=STRIPE_API_KEY,
        stripe_api_base=localstripe.base_url,
        stripe_webhook_secret=STRIPE_WEBHOOK_SECRET,
        # closeBillingMonth over HTTP closes every partner the session has made; a loaded CI machine
        # may need more than the production budget for that (tests of the budget set their own).
        request_timeout_seconds=300,
        # PostgreSQL: the app runs its own procrastinate worker, on queues of its own, so the jobs an
        # app defers run with its clock and gateway (on SQLite they run in-process anyway).
        embedded_worker=True,
        periodic_jobs=False,
        job_queue_prefix=f"test-{secrets.token_hex(4)}-",
    )


@pytest.fixture(scope="module")
def memory_gateway() -> InMemoryGateway:
    """One in-memory Stripe per module that asks for it (overriding `gateway` with it)."""
    return InMemoryGateway()


@pytest.fixture
async def gateway(localstripe: LocalStripe) -> AsyncIterator[StripeGateway]:
    """The real Stripe gateway, pointed at the session's localstripe."""
    gateway = StripeGateway(STRIPE_API_KEY, localstripe.base_url, STRIPE_WEBHOOK_SECRET)
    yield gateway
    await gateway.close()


@pytest.fixture
async def api(
    database_url: str,
    database: Database,
    clock: SettableClock,
    catalog: None,
    localstripe: LocalStripe,
    gateway: StripeGateway,
) -> AsyncIterator[Api]:
    app = create_app(stripe_settings(database_url, localstripe), clock=clock, gateway=gateway)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield Api(client)
    await app.state.services.jobs.close()
    await app.state.services.database.dispose()


@pytest.fixture
async def staff_token(database: Database, clock: SettableClock) -> str:
    async with UnitOfWork(database) as uow:
        token = await mint_token(
            uow, partner_id=None, role=Role.STAFF_ADMIN, label="test staff", at=clock.now()
        )
    return token.secret


CREATE_PARTNER = """
mutation($input: CreatePartnerInput!) {
  createPartner(input: $input) { partner { id name billingZone currency } errors { code message field } }
}"""
CREATE_TOKEN = """
mutation($input: CreateApiTokenInput!) {
  createApiToken(input: $input) { token { id secret partnerId staff } errors { code message field } }
}"""


@dataclass
class PartnerAccess:
    id: str
    token: str


async def enrol(api: Api, staff_token: str, name: str = "Acme Agency", zone: str = "UTC") -> PartnerAccess:
    """Create a partner and a token for it through the staff mutations."""
    created = await api.data(CREATE_PARTNER, {"input": {"name": name, "billingZone": zone}}, staff_token)
    partner_id = created["createPartner"]["partner"]["id"]
    minted = await api.data(CREATE_TOKEN, {"input": {"partnerId": partner_id}}, staff_token)
    return PartnerAccess(partner_id, minted["createApiToken"]["token"]["secret"])


@pytest.fixture
async def partner(api: Api, staff_token: str) -> PartnerAccess:
    return await enrol(api, staff_token)


@dataclass
class LiveServer:
    """The app under a real uvicorn: its address and its app (to reach the worker's own database)."""

    address: str
    app: Starlette

    @property
    def database(self) -> Database:
        """The worker's database: writes through it wake this worker's subscribers, as on SQLite."""
        database: Database = self.app.state.services.database
        return database

    def followers(self) -> int:
        """How many subscriptions of this worker are registered for wake-ups (a fence for tests)."""
        return self.database.signal.waiting(excluding_prefix=TOKEN_SIGNAL_PREFIX)


@pytest.fixture
async def served(
    database_url: str, clock: SettableClock, catalog: None, localstripe: LocalStripe
) -> AsyncIterator[LiveServer]:
    """The app under a real uvicorn on a free port (same process, same clock, session localstripe)."""
    async with serve(create_app(stripe_settings(database_url, localstripe), clock=clock)) as server:
        yield server


@contextlib.asynccontextmanager
async def serve(app: Starlette) -> AsyncIterator[LiveServer]:
    """Run `app` under a real uvicorn on a free port for the block."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, lifespan="on", log_level="warning", ws="websockets-sansio"
        )
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.02)
    try:
        yield LiveServer(f"127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        await serving


@pytest.fixture
def live_server(served: LiveServer) -> str:
    """host:port of the live server."""
    return served.address


@pytest.fixture
async def live_api(served: LiveServer) -> AsyncIterator[Api]:
    """GraphQL over real HTTP to the live server, so its commits wake its own subscribers."""
    async with httpx.AsyncClient(base_url=f"http://{served.address}", timeout=30) as client:
        yield Api(client)


class GraphQLSocket:
    """A graphql-transport-ws client over a real websocket."""

    def __init__(self, connection: websockets.ClientConnection) -> None:
        self.connection = connection

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, address: str, params: dict[str, Any] | None, origin: str | None = None
    ) -> AsyncIterator[GraphQLSocket]:
        """Connect and send connection_init; `origin` is the Origin header a browser page would send."""
        async with websockets.connect(
            f"ws://{address}/graphql",
            subprotocols=["graphql-transport-ws"],
            origin=None if origin is None else websockets.Origin(origin),
        ) as ws:
            socket_ = cls(ws)
            await socket_.send({"type": "connection_init", "payload": params or {}})
            yield socket_

    async def send(self, message: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(message))

    async def receive(self, timeout: float = 10) -> dict[str, Any]:
        while True:
            message: dict[str, Any] = json.loads(await asyncio.wait_for(self.connection.recv(), timeout))
            if message["type"] not in {"ping", "pong"}:
                return message

    async def subscribe(self, operation_id: str, query: str, variables: dict[str, Any] | None = None) -> None:
        await self.send(
            {
                "id": operation_id,
                "type": "subscribe",
                "payload": {"query": query, "variables": variables or {}},
            }
        )


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStripe]:
    """One localstripe server for the session, on a free port; its log is in the session's tmp dir."""
    log_path = tmp_path_factory.mktemp("localstripe") / "localstripe.log"
    with log_path.open("wb") as log:
        server = LocalStripe(free_port(), log)
        try:
            server.wait_until_ready()
            yield server
        finally:
            server.stop()


async def move_standing(
    database: Database, partner_id: str, event: StandingEvent, at: datetime, **details: Any
) -> None:
    """Move a partner's standing through its domain event, as payments and invoices do (recorded as the
    tests' own system job)."""
    async with UnitOfWork(database, actor=TEST_FIXTURE) as uow:
        await apply_standing_event(uow, partner_id=partner_id, event=event, at=at, **details)


async def enrol_in_good_standing(
    api: Api,
    staff_token: str,
    database: Database,
    clock: SettableClock,
    name: str = "Acme Agency",
    zone: str = "UTC",
) -> PartnerAccess:
    """A partner with a working card on file (Stripe's test Visa), added through addPaymentMethod."""
    access = await enrol(api, staff_token, name, zone)
    await add_card(api, access.token, "pm_card_visa")
    return access


ADD_PAYMENT_METHOD = """
mutation($input: AddPaymentMethodInput!) {
  addPaymentMethod(input: $input) {
    paymentMethod { id brand last4 expMonth expYear primary createdAt removedAt }
    errors { code message field }
  }
}"""


async def add_card(
    api: Api, token: str, payment_method_id: str, make_primary: bool = False
) -> dict[str, Any]:
    """Keep a card on file (asserting it worked) and return it as the API shows it."""
    body = await api.data(
        ADD_PAYMENT_METHOD,
        {"input": {"paymentMethodId": payment_method_id, "makePrimary": make_primary}},
        token,
    )
    payload = body["addPaymentMethod"]
    assert payload["errors"] == [], payload
    card: dict[str, Any] = payload["paymentMethod"]
    return card


@pytest.fixture
async def good_partner(api: Api, staff_token: str, database: Database, clock: SettableClock) -> PartnerAccess:
    return await enrol_in_good_standing(api, staff_token, database, clock)


LICENSING = [sys.executable, "-m", "app.cli"]
ROOT = Path(__file__).resolve().parents[2]


def stripe_env(localstripe: LocalStripe) -> dict[str, str]:
    return {
        "STRIPE_API_BASE": localstripe.base_url,
        "STRIPE_API_KEY": STRIPE_API_KEY,
        "STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
    }


@pytest.fixture
def demo_env(tmp_path: Path, localstripe: LocalStripe) -> dict[str, str]:
    # Like `make run`: localstripe is up before the demo is seeded.
    env = dict(os.environ, LICENSING_SANDBOX="1", PYTHONPATH=str(ROOT), **stripe_env(localstripe))
    # The demo always runs on its own SQLite file, like `make run` on a fresh clone.
    env["DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    return env


def run_demo(env: dict[str, str], tmp_path: Path, port: int) -> str:
    done = subprocess.run(
        [*LICENSING, "demo", "--access-file", str(tmp_path / "access.json"), "--port", str(port)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


@dataclass
class DemoServer:
    """`make run`'s server: its address, what the demo printed (tokens), and its log file."""

    base: str
    printed: str
    log: Path
    process: subprocess.Popen[bytes]

    def printed_token(self, who: str) -> str:
        """The `partner` or `staff` token the demo printed."""
        found = re.search(rf"{who} token:\s+(\S+)", self.printed)
        assert found, self.printed
        return found.group(1)


@pytest.fixture
def server(demo_env: dict[str, str], tmp_path: Path) -> Iterator[DemoServer]:
    """The demo seeded and served by the `licensing` CLI in a subprocess, as `make run` does."""
    port = free_port()
    printed = run_demo(demo_env, tmp_path, port)
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [*LICENSING, "serve", "--port", str(port)],
            env=demo_env,
            cwd=tmp_path,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise AssertionError("uvicorn did not start")
        yield DemoServer(base, printed, log, process)
    finally:
        process.terminate()
        process.wait(timeout=10)


@dataclass
class ServerProcess:
    """`licensing serve` in a subprocess on the session's database: its address, process and output."""

    address: str
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, as a process manager stops it; asserts uvicorn shut the app down and exited in time
        (uvicorn re-raises the signal once done, so the exit status is -SIGTERM)."""
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(timeout=timeout) in (0, -signal.SIGTERM)
        assert "Application shutdown complete." in self.stderr.read_text()


@contextlib.contextmanager
def serve_process(
    database_url: str, localstripe: LocalStripe, tmp_path: Path, **settings: str
) -> Iterator[ServerProcess]:
    """Start `licensing serve` with the session's database and localstripe (and `settings` as
    environment variables); stopped with SIGTERM after the block if still running."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), DATABASE_URL=database_url, **stripe_env(localstripe))
    env.update(LICENSING_LOG_LEVEL="info", LICENSING_LOG_FORMAT="json", **settings)
    stdout, stderr = tmp_path / f"serve-{port}.out", tmp_path / f"serve-{port}.err"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [*LICENSING, "serve", "--port", str(port)], env=env, cwd=tmp_path, stdout=out, stderr=err
        )
    try:
        deadline = time.monotonic() + 120  # a loaded CI machine takes a while to import everything
        # Its own log says it listens (another suite's server may have taken the port meanwhile).
        while f"Uvicorn running on http://127.0.0.1:{port}" not in stderr.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"licensing serve did not start:\n{stderr.read_text()}")
            time.sleep(0.1)
        yield ServerProcess(f"127.0.0.1:{port}", process, stdout, stderr)
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout=30)
