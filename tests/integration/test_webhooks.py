"""Partner webhooks end to end: endpoints registered over GraphQL, the partner's feed delivered to a real
HTTP receiver on 127.0.0.1 (sandbox mode), signed, in order, retried on the sandbox clock, and the SSRF
refusals at registration and at delivery time."""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from app.http import create_app
from app.jobs import JobServices, job_engine
from app.settings import Settings
from domain.clock import SettableClock, SystemClock
from domain.payments import CollectionPolicy
from domain.webhooks import SIGNATURE_HEADER, RetryPolicy, signed_by
from persistence.database import Database
from resolvers.webhook_deliveries import WebhookDelivery, deliver_endpoint
from resolvers.webhook_jobs import queue_endpoint
from resolvers.webhook_sending import AddressLookup, HttpWebhookSender
from tests.integration.conftest import Api, PartnerAccess, enrol, own_secrets, serve, stripe_settings
from tests.memory_gateway import InMemoryGateway

CREATE_ENDPOINT = """
mutation($input: CreateWebhookEndpointInput!) {
  createWebhookEndpoint(input: $input) {
    endpoint { id url events status createdAt disabledAt disabledReason }
    secret
    errors { code message field }
  }
}"""
ENDPOINTS = "{ webhookEndpoints { id url events status disabledReason } }"
DELIVERIES = """
query($id: ID!, $first: Int) {
  webhookDeliveries(endpointId: $id, first: $first) {
    totalCount
    nodes {
      id eventId eventType cursor status nextAttemptAt completedAt redeliveryRequestedAt
      attempts { number manual statusCode responseExcerpt error succeeded durationMs startedAt }
    }
  }
}"""
ENDPOINT_ACTION = """
mutation($id: ID!) {
  disableWebhookEndpoint(input: {id: $id}) { endpoint { id status } errors { code field } }
}"""
DELETE = "mutation($id: ID!) { deleteWebhookEndpoint(input: {id: $id}) { endpoint { id } errors { code } } }"
ROTATE = "mutation($id: ID!) { rotateWebhookSecret(input: {id: $id}) { secret errors { code } } }"
REDELIVER = """
mutation($id: ID!) {
  redeliverWebhook(input: {deliveryId: $id}) { delivery { id redeliveryRequestedAt } errors { code field } }
}"""
MINT = """
mutation($label: String!) { createApiToken(input: {label: $label, role: READ_ONLY}) { errors { code } } }"""


# -- a real HTTP receiver ---------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.body)
        return document


Answer = Callable[[Received, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Receiver:
    """A plain HTTP/1.1 server on 127.0.0.1: records each request and answers it as told per path."""

    port: int = 0
    received: list[Received] = field(default_factory=list)
    answers: dict[str, list[Answer]] = field(default_factory=dict)
    bytes_streamed: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def on(self, path: str, *answers: Answer) -> None:
        """Answer requests to `path` with these in turn (the last one repeats); default: 200 ok."""
        self.answers[path] = list(answers)

    def events(self, path: str) -> list[dict[str, Any]]:
        return [request.event for request in self.received if request.path == path]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode().split("\r\n")
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)
            }
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            request = Received(request_line.split(" ")[1], headers, body)
            self.received.append(request)
            queue = self.answers.get(request.path) or [reply(200, b"ok")]
            answer = queue.pop(0) if len(queue) > 1 else queue[0]
            await answer(request, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def reply(status: int, body: bytes = b"", **headers: str) -> Answer:
    async def answer(_request: Received, writer: asyncio.StreamWriter) -> None:
        extra = "".join(f"{name.replace('_', '-')}: {value}\r\n" for name, value in headers.items())
        writer.write(
            f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n{extra}Connection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()

    return answer


def stall(seconds: float) -> Answer:
    async def answer(_request: Received, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(seconds)
        await reply(200, b"late")(_request, writer)

    return answer


def endless(receiver: Receiver) -> Answer:
    """A 200 whose body never ends (until the client hangs up): 1 MiB chunks, up to 256 MiB."""

    async def answer(_request: Received, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
        chunk = b"x" * (1 << 20)
        for _ in range(256):
            writer.write(chunk)
            await writer.drain()
            receiver.bytes_streamed += len(chunk)

    return answer


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    server = await asyncio.start_server(found.handle, "127.0.0.1", 0)
    found.port = server.sockets[0].getsockname()[1]
    async with server:
        yield found
        server.close()


@pytest.fixture
async def sender() -> AsyncIterator[HttpWebhookSender]:
    """The real sender, in sandbox mode (loopback allowed), with a short deadline for the timeout test."""
    sending = HttpWebhookSender(AddressLookup(), sandbox=True, timeout_seconds=1.0)
    yield sending
    await sending.close()


@pytest.fixture
def delivery(database: Database, sender: HttpWebhookSender, clock: SettableClock) -> WebhookDelivery:
    return WebhookDelivery(database, sender, clock, sandbox=True)


async def register(api: Api, token: str, url: str, events: list[str] | None = None) -> dict[str, Any]:
    body = await api.data(CREATE_ENDPOINT, {"input": {"url": url, "events": events or ["*"]}}, token)
    payload: dict[str, Any] = body["createWebhookEndpoint"]
    return payload


async def endpoint_for(api: Api, token: str, url: str, events: list[str] | None = None) -> tuple[str, str]:
    payload = await register(api, token, url, events)
    assert payload["errors"] == [], payload
    return payload["endpoint"]["id"], payload["secret"]


async def make_events(api: Api, token: str, *labels: str) -> None:
    """Events on the partner's feed: each new token is an `api_token.created` event."""
    for label in labels:
        assert (await api.data(MINT, {"label": label}, token))["createApiToken"]["errors"] == []


async def deliveries(api: Api, token: str, endpoint_id: str) -> list[dict[str, Any]]:
    body = await api.data(DELIVERIES, {"id": endpoint_id, "first": 100}, token)
    nodes: list[dict[str, Any]] = body["webhookDeliveries"]["nodes"]
    return nodes


def labels(events: list[dict[str, Any]]) -> list[str]:
    return [event["data"]["label"] for event in events if event["type"] == "api_token.created"]


# -- delivered, signed, in order ----------------------------------------------------------------------


async def test_each_feed_event_arrives_once_signed_with_its_id_and_cursor_in_feed_order(
    api: Api, partner: PartnerAccess, receiver: Receiver, delivery: WebhookDelivery, clock: SettableClock
) -> None:
    endpoint_id, secret = await endpoint_for(api, partner.token, receiver.url("/hooks"), ["api_token"])
    await make_events(api, partner.token, "one", "two", "three")

    assert await deliver_endpoint(delivery, endpoint_id) == 3
    assert await deliver_endpoint(delivery, endpoint_id) == 0  # nothing twice

    events = receiver.events("/hooks")
    assert labels(events) == ["one", "two", "three"]
    cursors = [event["cursor"] for event in events]
    assert len(set(cursors)) == 3 and len({event["id"] for event in events}) == 3
    for request in receiver.received:
        assert request.headers["licensing-event-id"] == request.event["id"]
        assert request.headers["content-type"] == "application/json"
        assert signed_by(
            secret, request.headers[SIGNATURE_HEADER.lower()], request.body, now=int(clock.now().timestamp())
        )
        assert not signed_by(
            "whsec_other",
            request.headers[SIGNATURE_HEADER.lower()],
            request.body,
            now=int(clock.now().timestamp()),
        )
    listed = await deliveries(api, partner.token, endpoint_id)
    assert [d["status"] for d in listed] == ["SUCCEEDED"] * 3
    assert [d["eventId"] for d in reversed(listed)] == [event["id"] for event in events]
    assert [d["cursor"] for d in reversed(listed)] == cursors
    assert (
        listed[0]["attempts"][0]["statusCode"] == 200 and listed[0]["attempts"][0]["responseExcerpt"] == "ok"
    )


async def test_two_workers_delivering_at_once_send_each_event_once_and_in_order(
    api: Api, partner: PartnerAccess, receiver: Receiver, delivery: WebhookDelivery, clock: SettableClock
) -> None:
    endpoint_id, _ = await endpoint_for(api, partner.token, receiver.url("/race"), ["api_token"])
    await make_events(api, partner.token, *[f"event {n}" for n in range(6)])
    made = await asyncio.gather(*(deliver_endpoint(delivery, endpoint_id) for _ in range(3)))
    assert sum(made) == 6
    assert labels(receiver.events("/race")) == [f"event {n}" for n in range(6)]


async def test_the_event_filter_picks_streams_and_single_events(
    api: Api, partner: PartnerAccess, receiver: Receiver, delivery: WebhookDelivery, clock: SettableClock
) -> None:
    only_rotations, _ = await endpoint_for(
        api, partner.token, receiver.url("/rotations"), ["webhook_endpoint.secret_rotated"]
    )
    await make_events(api, partner.token, "not wanted")
    assert (await api.data(ROTATE, {"id": only_rotations}, partner.token))["rotateWebhookSecret"][
        "errors"
    ] == []
    await deliver_endpoint(delivery, only_rotations)
    assert [event["type"] for event in receiver.events("/rotations")] == ["webhook_endpoint.secret_rotated"]


async def test_a_rotated_secret_signs_the_next_delivery_and_the_old_one_no_longer_verifies(
    api: Api, partner: PartnerAccess, receiver: Receiver, delivery: WebhookDelivery, clock: SettableClock
) -> None:
    endpoint_id, old_secret = await endpoint_for(api, partner.token, receiver.url("/rotate"), ["api_token"])
    rotated = (await api.data(ROTATE, {"id": endpoint_id}, partner.token))["rotateWebhookSecret"]
    await make_events(api, partner.token, "after rotation")
    await deliver_endpoint(delivery, endpoint_id)
    (request,) = receiver.received
    now = int(clock.now().timestamp())
    assert signed_by(rotated["secret"], request.headers["licensing-signature"], request.body, now=now)
    assert not signed_by(old_secret, request.headers["licensing-signature"], request.body, now=now)


# -- failures and retries -------------------------------------------------------------------------------


async def test_a_500_is_retried_after_a_minute_and_later_events_wait_for_it(
    api: Api, partner: PartnerAccess, receiver: Receiver, delivery: WebhookDelivery, clock: SettableClock
) -> None:
    endpoint_id, _ = await endpoint_for(api, partner.token, receiver.url("/flaky"), ["api_token"])
    receiver.on("/flaky", reply(500, b"database down"), reply(200, b"ok"))
    await make_events(api, partner.token, "first", "second")

    failed_at = clock.now()
    assert await deliver_endpoint(delivery, endpoint_id) == 1
    clock.advance_to(failed_at + timedelta(seconds=59))
    assert await deliver_endpoint(delivery, endpoint_id) == 0
    listed = await deliveries(api, partner.token, endpoint_id)
    first = listed[-1]
    assert first["status"] == "PENDING" and first["attempts"][0]["statusCode"] == 500
    assert first["attempts"][0]["responseExcerpt"] == "database down"
    assert datetime.fromisoformat(first["nextAttemptAt"]) == failed_at + timedelta(minutes=1)
    assert listed[0]["attempts"] == []  # "second" waits behind "first"

    clock.advance_to(failed_at + timedelta(minutes=1))
    assert await deliver_endpoint(delivery, endpoint_id) == 2
    assert labels(receiver.events("/flaky")) == ["first", "first", "second"]
    assert [d["status"] for d in await deliveries(api, partner.token, endpoint_id)] == [
        "SUCCEEDED",
        "SUCCEEDED",
    ]


async def test_an_endpoint_that_does_not_answer_in_time_is_a_failed_attempt(
    api: Api, partner: PartnerAccess, receiver: Receiver, delivery: WebhookDelivery, clock: SettableClock
) -> None:
    endpoint_id, _ = await endpoint_for(api, partner.token, receiver.url("/slow"), ["api_token"])
    receiver.on("/slow", stall(5))
    await make_events(api, partner.token, "slow")
    await deliver_endpoint(delivery, endpoint_id)
    (attempt,) = (await deliveries(api, partner.token, endpoint_id))[0]["attempts"]
    assert attempt["statusCode"] is None and not attempt["succeeded"]
    assert attempt["error"] == "No complete answer within 1 s."
    assert attempt["durationMs"] < 5000


async def test_a_redirect_is_not_followed_and_counts_as_a_failure(
    api: Api, partner: PartnerAccess, receiver: Receiver, delivery: WebhookDelivery, clock: SettableClock
) -> None:
    endpoint_id, _ = await endpoint_for(api, partner.token, receiver.url("/moved"), ["api_token"])
    receiver.on("/moved", reply(302, b"", location=receiver.url("/elsewhere")))
    await make_events(api, partner.token, "moved")
    await deliver_endpoint(delivery, endpoint_id)
    (attempt,) = (await deliveries(api, partner.token, endpoint_id))[0]["attempts"]
    assert attempt["statusCode"] == 302 and not attempt["succeeded"]
    assert "Redirects are not followed" in attempt["error"]
    assert [request.path for request in receiver.received] == ["/moved"]


async def test_a_huge_answer_is_read_only_up_to_the_limit_and_4_kib_are_kept(
    api: Api, partner: PartnerAccess, receiver: Receiver, delivery: WebhookDelivery, clock: SettableClock
) -> None:
    endpoint_id, _ = await endpoint_for(api, partner.token, receiver.url("/huge"), ["api_token"])
    receiver.on("/huge", endless(receiver))
    await make_events(api, partner.token, "huge")
    await deliver_endpoint(delivery, endpoint_id)
    (attempt,) = (await deliveries(api, partner.token, endpoint_id))[0]["attempts"]
    assert attempt["succeeded"] and attempt["statusCode"] == 200
    assert attempt["responseExcerpt"] == "x" * 4096
    await asyncio.sleep(0.2)  # the receiver notices the hang-up
    assert receiver.bytes_streamed < 64 << 20  # it stopped long before its 256 MiB


async def test_after_three_days_of_failures_the_endpoint_is_disabled_and_the_partner_told(
    api: Api, partner: PartnerAccess, receiver: Receiver, delivery: WebhookDelivery, clock: SettableClock
) -> None:
    failing, _ = await endpoint_for(api, partner.token, receiver.url("/down"), ["api_token"])
    notices, _ = await endpoint_for(
        api, partner.token, receiver.url("/notices"), ["webhook_endpoint.disabled"]
    )
    receiver.on("/down", reply(503, b"maintenance"))
    await make_events(api, partner.token, "lost")
    started = clock.now()
    attempts = 0
    while True:
        attempts += await deliver_endpoint(delivery, failing)
        pending = [d for d in await deliveries(api, partner.token, failing) if d["status"] == "PENDING"]
        if not pending:
            break
        clock.advance_to(datetime.fromisoformat(pending[0]["nextAttemptAt"]))
    assert clock.now() == started + timedelta(days=3)
    (given_up,) = await deliveries(api, partner.token, failing)
    assert given_up["status"] == "FAILED" and len(given_up["attempts"]) == attempts
    endpoints = {e["id"]: e for e in (await api.data(ENDPOINTS, token=partner.token))["webhookEndpoints"]}
    assert endpoints[failing]["status"] == "DISABLED"
    assert "not delivered within 3 days; last attempt: HTTP 503" in endpoints[failing]["disabledReason"]

    await deliver_endpoint(delivery, notices)
    (notice,) = receiver.events("/notices")
    assert (notice["type"], notice["subject"], notice["data"]["reason"]) == (
        "webhook_endpoint.disabled",
        failing,
        "failing",
    )
    await make_events(api, partner.token, "after disabling")
    assert await deliver_endpoint(delivery, failing) == 0


async def test_redelivering_sends_the_same_event_id_again_as_a_manual_attempt(
    api: Api, partner: PartnerAccess, receiver: Receiver, delivery: WebhookDelivery, clock: SettableClock
) -> None:
    endpoint_id, _ = await endpoint_for(api, partner.token, receiver.url("/again"), ["api_token"])
    await make_events(api, partner.token, "again")
    await deliver_endpoint(delivery, endpoint_id)
    (delivered,) = await deliveries(api, partner.token, endpoint_id)
    asked = (await api.data(REDELIVER, {"id": delivered["id"]}, partner.token))["redeliverWebhook"]
    assert asked["errors"] == [] and asked["delivery"]["redeliveryRequestedAt"] is not None

    assert await deliver_endpoint(delivery, endpoint_id) == 1
    first, second = receiver.events("/again")
    assert first["id"] == second["id"] == delivered["eventId"]
    (after,) = await deliveries(api, partner.token, endpoint_id)
    assert [(a["number"], a["manual"]) for a in after["attempts"]] == [(1, False), (2, True)]
    assert after["redeliveryRequestedAt"] is None and after["status"] == "SUCCEEDED"


# -- SSRF -------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def api_of(settings: Settings, clock: SettableClock) -> AsyncIterator[Api]:
    """GraphQL over HTTP to an app of its own settings (its gateway and database closed after)."""
    app = create_app(settings, clock=clock)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        yield Api(client)
    await app.state.services.database.dispose()
    await app.state.services.gateway.close()


@pytest.fixture
async def production_api(database_url: str, database: Database, clock: SettableClock) -> AsyncIterator[Api]:
    """The API outside sandbox mode, with one host name answered without DNS (as an operator may)."""
    settings = own_secrets(
        database_url=database_url,
        webhook_resolve=(("metadata.partner.test", "169.254.169.254"), ("intranet.partner.test", "10.0.0.1")),
    )
    async with api_of(settings, clock) as api:
        yield api


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://10.0.0.1/hooks", "10.0.0.1 is a private address"),
        ("https://169.254.169.254/latest/meta-data", "169.254.169.254 is a link-local address"),
        ("https://[::ffff:10.0.0.1]/hooks", "10.0.0.1 is a private address (inside the IPv6 address"),
        ("https://[::1]/hooks", "::1 is a loopback address"),
        ("https://127.0.0.1/hooks", "127.0.0.1 is a loopback address"),
        ("https://100.64.1.1/hooks", "carrier-grade NAT"),
        ("https://metadata.partner.test/hooks", "metadata.partner.test resolves to 169.254.169.254"),
        ("https://intranet.partner.test/hooks", "intranet.partner.test resolves to 10.0.0.1"),
        ("http://93.184.215.14/hooks", "must use https"),
    ],
)
async def test_an_endpoint_on_a_private_or_metadata_address_is_refused_at_registration(
    production_api: Api, staff_token: str, url: str, why: str
) -> None:
    api = production_api
    partner = await enrol(api, staff_token, "Careful Agency")
    payload = await register(api, partner.token, url)
    assert payload["endpoint"] is None and payload["secret"] is None
    (error,) = payload["errors"]
    assert (error["code"], error["field"]) == ("INVALID_INPUT", "url")
    assert why in error["message"]
    assert (await api.data(ENDPOINTS, token=partner.token))["webhookEndpoints"] == []


@pytest.fixture
async def named_api(
    database_url: str, database: Database, clock: SettableClock, catalog: None, localstripe: Any
) -> AsyncIterator[Api]:
    """The sandbox API where `hooks.partner.test` answers 127.0.0.1 (LICENSING_WEBHOOK_RESOLVE)."""
    settings = stripe_settings(database_url, localstripe).replace(
        webhook_resolve=(("hooks.partner.test", "127.0.0.1"),)
    )
    async with api_of(settings, clock) as api:
        yield api


async def test_a_named_host_is_reached_at_its_checked_address_with_its_own_host_header(
    named_api: Api, staff_token: str, database: Database, receiver: Receiver, clock: SettableClock
) -> None:
    api = named_api
    partner = await enrol(api, staff_token, "Named Agency")
    url = f"http://hooks.partner.test:{receiver.port}/named?source=licensing"
    endpoint_id, _ = await endpoint_for(api, partner.token, url, ["api_token"])
    await make_events(api, partner.token, "by name")
    sending = HttpWebhookSender(AddressLookup({"hooks.partner.test": "127.0.0.1"}), sandbox=True)
    try:
        assert (
            await deliver_endpoint(WebhookDelivery(database, sending, clock, sandbox=True), endpoint_id) == 1
        )
    finally:
        await sending.close()
    (request,) = receiver.received
    assert request.path == "/named?source=licensing"
    assert request.headers["host"] == f"hooks.partner.test:{receiver.port}"
    assert labels([request.event]) == ["by name"]


@pytest.mark.parametrize("answer", ["10.0.0.1", "169.254.169.254", "::ffff:169.254.169.254"])
async def test_a_host_that_resolves_to_a_private_address_at_delivery_time_is_not_contacted(
    named_api: Api,
    staff_token: str,
    database: Database,
    receiver: Receiver,
    clock: SettableClock,
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
) -> None:
    """Registered while the name pointed at the (sandbox) receiver; by the attempt it resolves elsewhere."""
    api = named_api
    partner = await enrol(api, staff_token, "Rebound Agency")
    url = f"https://hooks.partner.test:{receiver.port}/in"
    endpoint_id, _ = await endpoint_for(api, partner.token, url, ["api_token"])
    await make_events(api, partner.token, "rebound")

    rebound = HttpWebhookSender(
        AddressLookup({"hooks.partner.test": answer}), sandbox=True, timeout_seconds=1.0
    )

    async def never(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the sender connected to a refused address")

    # Were the check to let it through, the attempt would fail here, before any packet left.
    monkeypatch.setattr(rebound._client, "send", never)
    try:
        await deliver_endpoint(WebhookDelivery(database, rebound, clock, sandbox=True), endpoint_id)
    finally:
        await rebound.close()
    (attempt,) = (await deliveries(api, partner.token, endpoint_id))[0]["attempts"]
    assert attempt["statusCode"] is None and not attempt["succeeded"]
    assert f"hooks.partner.test resolves to {answer.removeprefix('::ffff:')}" in attempt["error"]
    assert receiver.received == []


# -- access and tenancy -----------------------------------------------------------------------------------


async def test_a_partner_never_sees_or_changes_another_partners_endpoints(
    api: Api,
    staff_token: str,
    partner: PartnerAccess,
    receiver: Receiver,
    delivery: WebhookDelivery,
    clock: SettableClock,
) -> None:
    endpoint_id, _ = await endpoint_for(api, partner.token, receiver.url("/mine"), ["api_token"])
    await make_events(api, partner.token, "mine")
    await deliver_endpoint(delivery, endpoint_id)
    (delivered,) = await deliveries(api, partner.token, endpoint_id)
    other = await enrol(api, staff_token, "Nosy Agency")

    assert (await api.data(ENDPOINTS, token=other.token))["webhookEndpoints"] == []
    refused = await api.call(DELIVERIES, {"id": endpoint_id}, other.token)
    assert refused["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    for mutation, variables, name in (
        (ENDPOINT_ACTION, {"id": endpoint_id}, "disableWebhookEndpoint"),
        (DELETE, {"id": endpoint_id}, "deleteWebhookEndpoint"),
        (ROTATE, {"id": endpoint_id}, "rotateWebhookSecret"),
        (REDELIVER, {"id": delivered["id"]}, "redeliverWebhook"),
    ):
        body = await api.data(mutation, variables, other.token)
        assert body[name]["errors"][0]["code"] == "NOT_FOUND", name
    assert [
        e["status"]
        for e in (await api.data(ENDPOINTS, token=partner.token))["webhookEndpoints"]
        if e["id"] == endpoint_id
    ] == ["ENABLED"]
    # Nothing of the other partner's feed reaches this endpoint.
    await make_events(api, other.token, "theirs")
    assert await deliver_endpoint(delivery, endpoint_id) == 0


async def test_only_partner_admins_manage_endpoints_and_read_only_tokens_list_them(
    api: Api, staff_token: str, partner: PartnerAccess, receiver: Receiver
) -> None:
    reader = (
        await api.data(
            "mutation { createApiToken(input: {role: READ_ONLY}) { token { secret } } }", token=partner.token
        )
    )["createApiToken"]["token"]["secret"]
    refused = await register(api, reader, receiver.url("/x"))
    assert (
        refused["errors"][0]["code"] == "FORBIDDEN" and "`webhooks:manage`" in refused["errors"][0]["message"]
    )
    staff = await register(api, staff_token, receiver.url("/x"))
    assert staff["errors"][0]["code"] == "FORBIDDEN"
    endpoint_id, _ = await endpoint_for(api, partner.token, receiver.url("/x"))
    assert [e["id"] for e in (await api.data(ENDPOINTS, token=reader))["webhookEndpoints"]] == [endpoint_id]


async def test_a_disabled_endpoint_gets_nothing_and_a_deleted_one_is_gone(
    api: Api, partner: PartnerAccess, receiver: Receiver, delivery: WebhookDelivery, clock: SettableClock
) -> None:
    endpoint_id, _ = await endpoint_for(api, partner.token, receiver.url("/off"), ["api_token"])
    disabled = (await api.data(ENDPOINT_ACTION, {"id": endpoint_id}, partner.token))["disableWebhookEndpoint"]
    assert disabled["endpoint"]["status"] == "DISABLED"
    await make_events(api, partner.token, "unheard")
    assert await deliver_endpoint(delivery, endpoint_id) == 0
    assert (await api.data(DELETE, {"id": endpoint_id}, partner.token))["deleteWebhookEndpoint"][
        "errors"
    ] == []
    assert (await api.data(ENDPOINTS, token=partner.token))["webhookEndpoints"] == []
    assert receiver.received == []


# -- inside `licensing serve` -------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def served_api(settings: Settings, clock: SettableClock) -> AsyncIterator[Api]:
    """The app served by uvicorn on a free port (its own webhook dispatch running), and a client of it."""
    async with (
        serve(create_app(settings, clock=clock)) as server,
        httpx.AsyncClient(base_url=f"http://{server.address}", timeout=30) as client,
    ):
        yield Api(client)


async def test_the_server_delivers_new_events_by_itself(
    database_url: str,
    clock: SettableClock,
    catalog: None,
    localstripe: Any,
    staff_token: str,
    receiver: Receiver,
) -> None:
    settings = stripe_settings(database_url, localstripe).replace(webhook_poll_seconds=0.2)
    async with served_api(settings, clock) as api:
        partner = await enrol(api, staff_token, "Live Agency")
        await endpoint_for(api, partner.token, receiver.url("/live"), ["api_token"])
        await make_events(api, partner.token, "live one", "live two")
        for _ in range(200):
            if len(receiver.events("/live")) >= 2:
                break
            await asyncio.sleep(0.05)
        assert labels(receiver.events("/live")) == ["live one", "live two"]


async def test_a_redelivery_is_sent_at_once_by_a_job_not_at_the_next_look_for_due_work(
    database_url: str,
    clock: SettableClock,
    catalog: None,
    localstripe: Any,
    staff_token: str,
    receiver: Receiver,
) -> None:
    # The server's own look for due work comes only every hour: what arrives sooner was queued.
    settings = stripe_settings(database_url, localstripe).replace(webhook_poll_seconds=3600)
    async with served_api(settings, clock) as api:
        partner = await enrol(api, staff_token, "Redelivered Agency")
        endpoint_id, _ = await endpoint_for(api, partner.token, receiver.url("/redo"), ["api_token"])
        await make_events(api, partner.token, "redo")
        await arrivals(receiver, "/redo", 1)
        (delivered,) = await deliveries(api, partner.token, endpoint_id)

        asked = (await api.data(REDELIVER, {"id": delivered["id"]}, partner.token))["redeliverWebhook"]

        assert asked["errors"] == []
        await arrivals(receiver, "/redo", 2)
        first, again = receiver.events("/redo")
        assert first["id"] == again["id"] == delivered["eventId"]


async def test_a_failed_delivery_is_retried_by_a_job_queued_for_its_retry_time(
    database_url: str, database: Database, partner: PartnerAccess, api: Api, receiver: Receiver
) -> None:
    """No look for due work runs here: only the job the failure queued for later can send it again."""
    clock = SystemClock()
    sending = HttpWebhookSender(AddressLookup(), sandbox=True, timeout_seconds=5)
    soon = RetryPolicy(first_delay=timedelta(seconds=1))
    services = JobServices(
        database,
        InMemoryGateway(),
        clock,
        CollectionPolicy(),
        webhooks=WebhookDelivery(database, sending, clock, sandbox=True, policy=soon),
    )
    engine = job_engine(
        database_url,
        services,
        periodic=False,
        embedded_worker=True,
        queue_prefix=f"hooks-{secrets.token_hex(4)}-",
    )
    endpoint_id, _ = await endpoint_for(api, partner.token, receiver.url("/later"), ["api_token"])
    receiver.on("/later", reply(503, b"busy"), reply(200, b"ok"))
    await make_events(api, partner.token, "later")
    try:
        await queue_endpoint(engine, endpoint_id)
        await arrivals(receiver, "/later", 2)
        delivered = await settled(api, partner.token, endpoint_id)
    finally:
        await engine.close()
        await sending.close()
    assert delivered["status"] == "SUCCEEDED"
    failed, succeeded = delivered["attempts"]
    assert failed["statusCode"] == 503 and succeeded["statusCode"] == 200
    waited = datetime.fromisoformat(succeeded["startedAt"]) - datetime.fromisoformat(failed["startedAt"])
    assert waited >= timedelta(seconds=1)


async def arrivals(receiver: Receiver, path: str, count: int, *, seconds: float = 30) -> None:
    """Wait until `path` has received `count` requests."""
    for _ in range(int(seconds / 0.05)):
        if len(receiver.events(path)) >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path}: {len(receiver.events(path))} of {count} requests after {seconds}s")


async def settled(api: Api, token: str, endpoint_id: str, *, seconds: float = 30) -> dict[str, Any]:
    """The endpoint's only delivery once it is no longer pending (its last attempt is recorded)."""
    for _ in range(int(seconds / 0.05)):
        (delivery,) = await deliveries(api, token, endpoint_id)
        if delivery["status"] != "PENDING":
            return delivery
        await asyncio.sleep(0.05)
    raise AssertionError(f"delivery still pending after {seconds}s: {delivery}")
