"""What operators see of the business: charges by outcome, feed lag and month-close progress at /metrics,
and the optional OpenTelemetry spans (docs: README, Operations)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.devstripe import LocalStripe
from app.http import create_app
from domain.clock import SettableClock
from persistence.database import Database
from tests.integration.billing_run_operations import close_month
from tests.integration.conftest import (
    ROOT,
    Api,
    GraphQLSocket,
    LiveServer,
    PartnerAccess,
    add_card,
    enrol_in_good_standing,
    serve,
    serve_process,
    stripe_settings,
)
from tests.integration.license_operations import issue
from tests.integration.payment_operations import PAY, VISA, card_typed_in, first_of, past_due_july
from tests.integration.test_operations import metric


async def scrape(client: httpx.AsyncClient) -> str:
    page = await client.get("/metrics")
    assert page.status_code == 200
    return page.text


async def test_charges_are_counted_by_outcome(
    api: Api, staff_token: str, localstripe: LocalStripe, clock: SettableClock
) -> None:
    # July's close declines the only card (it charges every partner the session left open: a baseline).
    access, invoice = await past_due_july(api, staff_token, localstripe, clock)
    before = await scrape(api.client)
    assert metric(before, 'licensing_charges_total{outcome="declined"}') >= 1
    await add_card(api, access.token, await card_typed_in(localstripe, VISA))

    # Primary first (declined again), then the new Visa (succeeds).
    paid = await api.data(PAY, {"input": {"invoiceId": invoice["id"]}}, access.token)
    assert paid["payInvoice"]["invoice"]["status"] == "PAID"

    after = await scrape(api.client)
    for outcome, more in {"succeeded": 1, "declined": 1, "failed": 0, "unknown": 0}.items():
        sample = f'licensing_charges_total{{outcome="{outcome}"}}'
        assert metric(after, sample) - metric(before, sample) == more, outcome
    assert 'licensing_charges_total{outcome="unknown"}' in after  # every outcome shows, at 0


async def test_month_close_progress_shows_partners_done_of_the_total(
    api: Api, staff_token: str, partner: PartnerAccess, clock: SettableClock
) -> None:
    before = await scrape(api.client)
    assert metric(before, "licensing_month_close_partners") == 0
    clock.advance_to(first_of(8))
    closed = await close_month(api, "2026-07", staff_token)  # waits for the billing run to finish
    assert closed["errors"] == []

    after = await scrape(api.client)
    total = metric(after, "licensing_month_close_partners")
    assert total == closed["run"]["partnersTotal"] >= 1
    assert metric(after, "licensing_month_close_partners_done") == total


async def test_feed_lag_is_measured_for_each_event_delivered_live(
    served: LiveServer,
    live_api: Api,
    api: Api,
    staff_token: str,
    database: Database,
    clock: SettableClock,
) -> None:
    access = await enrol_in_good_standing(api, staff_token, database, clock)
    async with GraphQLSocket.open(served.address, {"authorization": f"Bearer {access.token}"}) as socket:
        assert (await socket.receive())["type"] == "connection_ack"
        await socket.subscribe("1", "subscription { licenseEvents { key action } }")
        async with asyncio.timeout(10):
            while served.followers() < 1:
                await asyncio.sleep(0.01)
        [key] = await issue(live_api, access.token)
        message = await socket.receive()
        assert message["payload"]["data"]["licenseEvents"] == {"key": key, "action": "issue"}
        page = await scrape(live_api.client)
    assert metric(page, "licensing_feed_lag_seconds_count") == 1
    lag = metric(page, "licensing_feed_lag_seconds_sum")
    assert 0 < lag < 5
    # In the bucket its value belongs to, and in every larger one.
    assert metric(page, 'licensing_feed_lag_seconds_bucket{le="5.0"}') == 1


HELP = 'query Help { support { email } validateLicense(key: "k_1", site: "a.example") { valid } }'


def spans_printed(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_with_tracing_on_a_served_query_prints_its_spans(
    database_url: str, localstripe: LocalStripe, tmp_path: Path
) -> None:
    with serve_process(database_url, localstripe, tmp_path, LICENSING_OTEL_TRACING="1") as server:
        answered = httpx.post(
            f"http://{server.address}/graphql",
            json={"query": HELP},
            headers={"X-Request-Id": "trace-me-1"},
            timeout=30,
        )
        assert answered.status_code == 200 and "errors" not in answered.json()
        server.stop()  # the console exporter prints each span as it ends; nothing is left behind

    spans = spans_printed(server.stdout.read_text())
    [operation] = [span for span in spans if span["name"] == "GraphQL Query: Help"]
    assert operation["kind"] == "SpanKind.SERVER" and operation["parent_id"] is None
    assert operation["attributes"]["licensing.request_id"] == "trace-me-1"
    # The caller's values are not recorded: string literals are blanked, arguments left out.
    assert operation["attributes"]["query"] == (
        'query Help { support { email } validateLicense(key: "…", site: "…") { valid } }'
    )
    assert operation["resource"]["attributes"]["service.name"] == "partner-licensing"
    children = {
        span["name"]: span
        for span in spans
        if span["context"]["trace_id"] == operation["context"]["trace_id"] and span is not operation
    }
    assert {"GraphQL Parsing", "GraphQL Validation", "GraphQL Resolving: support"} <= children.keys()
    resolving = children["GraphQL Resolving: validateLicense"]
    assert resolving["parent_id"] == operation["context"]["span_id"]
    assert not any(name.startswith("graphql.param") for name in resolving["attributes"])


async def test_with_an_otlp_endpoint_spans_are_sent_to_the_collector(
    database_url: str, localstripe: LocalStripe, catalog: None
) -> None:
    received: list[ExportTraceServiceRequest] = []

    async def collect(request: Request) -> Response:
        received.append(ExportTraceServiceRequest.FromString(await request.body()))
        return Response(b"", media_type="application/x-protobuf")

    async with serve(Starlette(routes=[Route("/v1/traces", collect, methods=["POST"])])) as collector:
        settings = stripe_settings(database_url, localstripe).replace(
            otel_tracing=True, otlp_endpoint=f"http://{collector.address}", otel_service_name="licensing-test"
        )
        async with serve(create_app(settings)) as server, httpx.AsyncClient() as client:
            answered = await client.post(
                f"http://{server.address}/graphql", json={"query": "query Ping { support { email } }"}
            )
            assert answered.status_code == 200
        # Stopping the app flushed the batch.
    spans = [
        (resource.resource, span)
        for request in received
        for resource in request.resource_spans
        for scope in resource.scope_spans
        for span in scope.spans
    ]
    names = {span.name for _resource, span in spans}
    assert {"GraphQL Query: Ping", "GraphQL Resolving: support"} <= names
    service = {
        attribute.value.string_value
        for resource, _span in spans
        for attribute in resource.attributes
        if attribute.key == "service.name"
    }
    assert service == {"licensing-test"}


def test_opentelemetry_is_loaded_only_when_tracing_is_on(tmp_path: Path) -> None:
    script = f"""
import sys
from app.http import create_app
from app.settings import Settings

def loaded():
    return any(name.startswith("opentelemetry") for name in sys.modules)

settings = Settings(database_url="sqlite+aiosqlite:///{tmp_path}/x.db", sandbox=True)
create_app(settings)
print("off:", loaded())
create_app(settings.replace(otel_tracing=True))
print("on:", loaded())
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.split() == ["off:", "False", "on:", "True"]
