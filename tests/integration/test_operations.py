"""Running it in production: probes, metrics, JSON logs, CORS, worker count, settings, shutdown."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from app.devstripe import LocalStripe, free_port
from app.http import create_app
from domain.clock import SettableClock
from persistence.database import Database
from tests.conftest import ON_POSTGRES
from tests.integration.conftest import (
    LICENSING,
    Api,
    DemoServer,
    GraphQLSocket,
    LiveServer,
    PartnerAccess,
    enrol_in_good_standing,
    serve,
    serve_process,
    stripe_settings,
)
from tests.integration.license_operations import issue

PORTAL = "https://portal.example.com"
AppClient = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def client_for(database_url: str, localstripe: LocalStripe, catalog: None) -> AsyncIterator[AppClient]:
    """In-process clients for apps built with the tests' settings, changed as given."""
    apps: list[Starlette] = []

    def client(**changes: Any) -> httpx.AsyncClient:
        app = create_app(stripe_settings(database_url, localstripe).replace(**changes))
        apps.append(app)
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")

    yield client
    for app in apps:
        await app.state.services.database.dispose()


async def test_readyz_checks_the_database_the_feed_listener_and_stripe(served: LiveServer) -> None:
    async with httpx.AsyncClient() as client:
        ready = await client.get(f"http://{served.address}/readyz")
        metrics = await client.get(f"http://{served.address}/metrics")
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    assert {name: check["ok"] for name, check in checks.items()} == {
        "database": True,
        "feed_listener": True,
        "stripe": True,
    }
    listening = "listening" if ON_POSTGRES else "in-process wake-ups (SQLite)"
    assert checks["feed_listener"]["detail"] == listening
    assert metric(metrics.text, "licensing_feed_listener_up") == 1


async def test_readyz_is_503_naming_stripe_when_it_is_unreachable_while_healthz_stays_200(
    client_for: AppClient,
) -> None:
    async with client_for(stripe_api_base=f"http://127.0.0.1:{free_port()}") as client:
        ready = await client.get("/readyz")
        alive = await client.get("/healthz")
    assert ready.status_code == 503 and ready.json()["status"] == "not ready"
    assert ready.json()["checks"]["stripe"] == {"ok": False, "detail": "unreachable (ConnectError)"}
    assert ready.json()["checks"]["database"]["ok"] is True
    assert (alive.status_code, alive.json()) == (200, {"status": "ok"})


async def test_readyz_is_503_when_stripe_refuses_the_api_key(client_for: AppClient) -> None:
    # localstripe takes any key: this stand-in answers as Stripe does to a revoked one.
    def refuse(_request: Request) -> JSONResponse:
        return JSONResponse({"error": {"type": "invalid_request_error"}}, status_code=401)

    async with (
        serve(Starlette(routes=[Route("/v1/customers", refuse)])) as stripe,
        client_for(stripe_api_base=f"http://{stripe.address}") as client,
    ):
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["stripe"] == {"ok": False, "detail": "the API key was refused"}


async def test_readyz_is_503_when_the_database_is_gone(client_for: AppClient, tmp_path: Path) -> None:
    async with client_for(database_url=f"sqlite+aiosqlite:///{tmp_path / 'no' / 'such.db'}") as client:
        ready = await client.get("/readyz")
        alive = await client.get("/healthz")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] == {"ok": False, "detail": "unreachable"}
    assert alive.status_code == 200


def metric(text: str, sample: str) -> float:
    """The value of one sample line (`name{labels}`) of a Prometheus text page (0 if absent)."""
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == sample:
            return float(value)
    return 0.0


async def test_metrics_count_operations_by_root_field_and_errors_by_code(
    api: Api, partner: PartnerAccess
) -> None:
    await api.data("{ viewer { name } }", token=partner.token)
    await api.call("{ viewer { name } }")  # no token
    await api.call("{ viewer { name } }", token="plk_not_a_token")
    refused = await api.data(
        "mutation($input: IssueLicensesInput!) { issueLicenses(input: $input) { errors { code } } }",
        {"input": {"items": [{"productSlug": "jetpack-boost", "quantity": 1}]}},
        partner.token,
    )
    code = refused["issueLicenses"]["errors"][0]["code"]  # a new partner has no card yet
    page = await api.client.get("/metrics")
    assert page.headers["content-type"].startswith("text/plain")
    text = page.text
    operations = "licensing_graphql_operation_seconds_count"
    assert metric(text, f'{operations}{{operation="viewer",type="query"}}') == 3
    assert metric(text, f'{operations}{{operation="issueLicenses",type="mutation"}}') == 1
    assert metric(text, 'licensing_graphql_errors_total{code="UNAUTHENTICATED"}') == 2
    assert metric(text, f'licensing_graphql_errors_total{{code="{code}"}}') == 1
    # Six POSTs: the `partner` fixture's two staff mutations, then the four above.
    assert metric(text, 'licensing_http_request_seconds_count{route="/graphql",status="200"}') == 6


async def test_metrics_count_open_websockets_and_waiting_subscriptions(
    served: LiveServer, partner: PartnerAccess
) -> None:
    async def sample(name: str) -> float:
        async with httpx.AsyncClient() as client:
            return metric((await client.get(f"http://{served.address}/metrics")).text, name)

    async with GraphQLSocket.open(served.address, {"authorization": f"Bearer {partner.token}"}) as socket:
        assert (await socket.receive())["type"] == "connection_ack"
        await socket.subscribe("1", "subscription { standingChanged { toState } }")
        async with asyncio.timeout(10):
            while served.followers() < 1:
                await asyncio.sleep(0.01)
        assert await sample("licensing_open_websockets") == 1
        assert await sample("licensing_subscriptions_waiting") == 1
    async with asyncio.timeout(10):
        while await sample("licensing_open_websockets"):
            await asyncio.sleep(0.01)
    assert await sample("licensing_subscriptions_waiting") == 0


async def test_metrics_can_be_turned_off(client_for: AppClient) -> None:
    async with client_for(metrics=False) as client:
        assert (await client.get("/metrics")).status_code == 404


async def test_cors_answers_only_the_configured_origins(client_for: AppClient) -> None:
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    query = {"query": "{ support { email } }"}
    async with client_for(cors_origins=(PORTAL,)) as client:
        allowed = await client.options("/graphql", headers={"Origin": PORTAL, **preflight})
        posted = await client.post("/graphql", json=query, headers={"Origin": PORTAL})
        unknown = await client.options("/graphql", headers={"Origin": "https://evil.example", **preflight})
        unknown_post = await client.post("/graphql", json=query, headers={"Origin": "https://evil.example"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == PORTAL
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    assert posted.headers["access-control-allow-origin"] == PORTAL
    assert posted.headers["access-control-expose-headers"] == "X-Request-Id"
    assert "access-control-allow-origin" not in unknown.headers and unknown.status_code == 400
    assert unknown_post.status_code == 200 and "access-control-allow-origin" not in unknown_post.headers


async def test_without_cors_origins_no_origin_gets_cors_headers(client_for: AppClient) -> None:
    async with client_for() as client:
        posted = await client.post(
            "/graphql", json={"query": "{ support { email } }"}, headers={"Origin": PORTAL}
        )
    assert "access-control-allow-origin" not in posted.headers


def licensing(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*LICENSING, *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(ON_POSTGRES, reason="about SQLite")
def test_serving_sqlite_with_several_workers_is_refused_with_the_reason(demo_env: dict[str, str]) -> None:
    refused = licensing(demo_env, "serve", "--workers", "4", "--port", str(free_port()))
    assert refused.returncode == 2
    assert "--workers 4 needs PostgreSQL" in refused.stderr and "in-process" in refused.stderr


@pytest.mark.skipif(ON_POSTGRES, reason="settings are parsed the same on both")
def test_a_malformed_setting_stops_the_cli_naming_the_variable(demo_env: dict[str, str]) -> None:
    refused = licensing({**demo_env, "LICENSING_LOG_FORMAT": "yaml"}, "migrate")
    assert refused.returncode == 2
    assert (
        refused.stderr.strip()
        == "error: bad setting: LICENSING_LOG_FORMAT='yaml': expected one of json, text"
    )


@pytest.mark.skipif(ON_POSTGRES, reason="settings are parsed the same on both")
def test_serve_with_bad_settings_lists_every_one_and_starts_nothing(demo_env: dict[str, str]) -> None:
    port = free_port()
    bad = {
        "LICENSING_MAX_BODY_BYTES": "1MB",
        "LICENSING_CORS_ORIGINS": "https://portal.example.com,portal.example.com",
        "LICENSING_LOG_LEVEL": "loud",
        "LICENSING_METRICS": "perhaps",
        "STRIPE_WEBHOOK_SECRET": "whsec_own",
    }
    refused = licensing({**demo_env, **bad}, "serve", "--port", str(port))
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert refused.stderr.splitlines() == [
        "error: 4 bad settings:",
        "  LICENSING_MAX_BODY_BYTES='1MB': expected a whole number",
        "  LICENSING_CORS_ORIGINS='https://portal.example.com,portal.example.com': 'portal.example.com' is "
        "not an origin (scheme://host[:port], like https://portal.example.com; did you mean "
        "https://portal.example.com?)",
        "  LICENSING_METRICS='perhaps': expected 1 or 0 (also true/false, yes/no, on/off)",
        "  LICENSING_LOG_LEVEL='loud': expected one of debug, info, warning, error",
    ]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


@pytest.mark.skipif(ON_POSTGRES, reason="the demo runs on SQLite; this pass already ran it")
async def test_the_server_logs_json_lines_with_request_id_partner_and_operation(server: DemoServer) -> None:
    partner_token = server.printed_token("partner")
    async with httpx.AsyncClient() as client:
        await client.post(
            f"{server.base}/graphql",
            json={"query": "query Wallet { viewer { name } }"},
            headers={"Authorization": f"Bearer {partner_token}", "X-Request-Id": "trace-0042"},
        )
    # The request's line is written once its response has gone out, so it may trail the answer a little.
    for _ in range(50):
        lines = [json.loads(line) for line in server.log.read_text().splitlines()]
        logged = [line for line in lines if line.get("request_id") == "trace-0042"]
        if logged:
            break
        await asyncio.sleep(0.1)
    [request] = logged
    assert request["message"] == "request" and request["level"] == "info"
    assert request["operation"] == "Wallet" and request["partner_id"].startswith("ptr_")
    assert (request["method"], request["path"], request["status"]) == ("POST", "/graphql", 200)
    assert isinstance(request["duration_ms"], float)
    assert any(line["logger"] == "uvicorn.error" for line in lines)  # uvicorn's lines are JSON too


async def test_stopping_the_server_closes_websockets_with_1012_and_clients_resume_on_another(
    database_url: str,
    localstripe: LocalStripe,
    tmp_path: Path,
    served: LiveServer,
    live_api: Api,
    api: Api,
    staff_token: str,
    database: Database,
    clock: SettableClock,
) -> None:
    access = await enrol_in_good_standing(api, staff_token, database, clock)
    auth = {"authorization": f"Bearer {access.token}"}
    subscription = "subscription($since: String) { licenseEvents(since: $since) { cursor key } }"
    with serve_process(database_url, localstripe, tmp_path) as stopping:
        async with GraphQLSocket.open(stopping.address, auth) as socket:
            assert (await socket.receive())["type"] == "connection_ack"
            async with httpx.AsyncClient(base_url=f"http://{stopping.address}", timeout=30) as client:
                now = (await Api(client).data("{ eventCursor }", token=access.token))["eventCursor"]
                await socket.subscribe("1", subscription, {"since": now})
                [first] = await issue(Api(client), access.token)
            delivered = (await socket.receive(timeout=30))["payload"]["data"]["licenseEvents"]
            assert delivered["key"] == first

            stopping.process.send_signal(signal.SIGTERM)  # as a process manager stops a worker
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await socket.receive(timeout=30)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012  # "service restart"
        assert await asyncio.to_thread(stopping.process.wait, 30) in (0, -signal.SIGTERM)
        assert "Application shutdown complete." in stopping.stderr.read_text()

    # Another worker goes on; what commits while the client reconnects is not lost.
    [second] = await issue(live_api, access.token)
    async with GraphQLSocket.open(served.address, auth) as socket:
        assert (await socket.receive())["type"] == "connection_ack"
        await socket.subscribe("1", subscription, {"since": delivered["cursor"]})
        resumed = (await socket.receive())["payload"]["data"]["licenseEvents"]
    assert resumed["key"] == second
