"""Subscriptions over graphql-transport-ws: a partner's own events, in order, resumable, never another's."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from app.settings import Settings
from domain.clock import SettableClock
from domain.standing import StandingEvent
from resolvers.feed import encode_feed_cursor
from tests.integration.billing_run_operations import close_month
from tests.integration.conftest import (
    Api,
    GraphQLSocket,
    LiveServer,
    PartnerAccess,
    enrol,
    enrol_in_good_standing,
    move_standing,
)
from tests.integration.invoice_adjustment_operations import REFUND
from tests.integration.license_operations import REVOKE, UNASSIGN, assign, fresh_site, issue, mutate

LICENSE_EVENTS = """
subscription($keys: [String!], $since: String) {
  licenseEvents(keys: $keys, since: $since) { cursor key seq action fromState toState site previousSite }
}"""
STANDING_CHANGED = """
subscription($since: String) {
  standingChanged(since: $since) {
    cursor action fromState toState at
    standing { state since allowedActions blockedActions { action code } }
  }
}"""
INVOICE_UPDATED = """
subscription($since: String) {
  invoiceUpdated(since: $since) {
    cursor action fromStatus toStatus at invoice { id number month status total { amount } }
  }
}"""
EVENT_CURSOR = "{ eventCursor }"


def auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def event_cursor(api: Api, token: str) -> str:
    cursor: str = (await api.data(EVENT_CURSOR, token=token))["eventCursor"]
    return cursor


async def connected(socket: GraphQLSocket) -> None:
    assert (await socket.receive())["type"] == "connection_ack"


async def items(socket: GraphQLSocket, operation_id: str, count: int) -> list[dict[str, Any]]:
    """The next `count` results of one subscription (failing on an error or an early complete)."""
    received = []
    while len(received) < count:
        message = await socket.receive()
        assert message["id"] == operation_id and message["type"] == "next", message
        assert "errors" not in message["payload"], message
        received.append(next(iter(message["payload"]["data"].values())))
    return received


async def subscribed(served: LiveServer, followers: int) -> None:
    """Wait until the server registered the subscriptions: from then on, no commit can be missed."""
    async with asyncio.timeout(10):
        while served.followers() < followers:
            await asyncio.sleep(0.01)


async def test_license_events_arrive_in_order_as_a_license_is_issued_assigned_and_revoked(
    served: LiveServer, live_api: Api, staff_token: str, clock: SettableClock
) -> None:
    partner = await enrol_in_good_standing(live_api, staff_token, served.database, clock)
    since = await event_cursor(live_api, partner.token)
    async with GraphQLSocket.open(served.address, auth(partner.token)) as socket:
        await connected(socket)
        await socket.subscribe("1", LICENSE_EVENTS, {"since": since})
        [key] = await issue(live_api, partner.token)
        site = fresh_site()
        assert (await assign(live_api, partner.token, key, site))["errors"] == []
        assert (await mutate(live_api, partner.token, REVOKE, key=key))["errors"] == []

        events = await items(socket, "1", 3)
    assert [(e["key"], e["action"], e["fromState"], e["toState"]) for e in events] == [
        (key, "issue", None, "ISSUED"),
        (key, "assign", "ISSUED", "ASSIGNED"),
        (key, "revoke", "ASSIGNED", "REVOKED"),
    ]
    assert events[1]["site"] == site
    assert [e["seq"] for e in events] == sorted({e["seq"] for e in events})
    assert len({e["cursor"] for e in events}) == 3


async def test_without_since_only_events_committed_after_subscribing_arrive(
    served: LiveServer, live_api: Api, good_partner: PartnerAccess
) -> None:
    [before] = await issue(live_api, good_partner.token)
    async with GraphQLSocket.open(served.address, auth(good_partner.token)) as socket:
        await connected(socket)
        followers = served.followers()
        await socket.subscribe("1", LICENSE_EVENTS)
        await subscribed(served, followers + 1)
        [after] = await issue(live_api, good_partner.token)
        [event] = await items(socket, "1", 1)
    assert before != after
    assert (event["key"], event["action"]) == (after, "issue")


async def test_since_replays_what_was_missed_then_goes_live_with_no_duplicate(
    served: LiveServer, live_api: Api, good_partner: PartnerAccess
) -> None:
    token = good_partner.token
    since = await event_cursor(live_api, token)
    async with GraphQLSocket.open(served.address, auth(token)) as socket:
        await connected(socket)
        await socket.subscribe("1", LICENSE_EVENTS, {"since": since})
        [key] = await issue(live_api, token)
        [issued] = await items(socket, "1", 1)

    # Disconnected: these commit while nobody listens.
    site = fresh_site()
    await assign(live_api, token, key, site)
    await mutate(live_api, token, UNASSIGN, key=key)

    async with GraphQLSocket.open(served.address, auth(token)) as socket:
        await connected(socket)
        await socket.subscribe("2", LICENSE_EVENTS, {"since": issued["cursor"]})
        missed = await items(socket, "2", 2)
        await mutate(live_api, token, REVOKE, key=key)
        [live] = await items(socket, "2", 1)

    events = [issued, *missed, live]
    assert [e["action"] for e in events] == ["issue", "assign", "unassign", "revoke"]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs))


async def test_another_partners_key_never_delivers_anything(
    served: LiveServer, live_api: Api, staff_token: str, clock: SettableClock
) -> None:
    mine = await enrol_in_good_standing(live_api, staff_token, served.database, clock, "Mine Agency")
    theirs = await enrol_in_good_standing(live_api, staff_token, served.database, clock, "Their Agency")
    [their_key] = await issue(live_api, theirs.token)
    [my_key] = await issue(live_api, mine.token)
    since = await event_cursor(live_api, mine.token)
    async with GraphQLSocket.open(served.address, auth(mine.token)) as socket:
        await connected(socket)
        await socket.subscribe(
            "watching-theirs", LICENSE_EVENTS, {"keys": [their_key, my_key], "since": since}
        )
        await socket.subscribe("everything", LICENSE_EVENTS, {"since": since})
        await assign(live_api, theirs.token, their_key, fresh_site("theirs"))
        await mutate(live_api, theirs.token, REVOKE, key=their_key)
        # The fence: our own event commits after theirs, so anything of theirs would have come first.
        await assign(live_api, mine.token, my_key, fresh_site("mine"))
        received = [await socket.receive(), await socket.receive()]

    assert sorted(message["id"] for message in received) == ["everything", "watching-theirs"]
    for message in received:
        event = message["payload"]["data"]["licenseEvents"]
        assert (event["key"], event["action"]) == (my_key, "assign")


@pytest.mark.parametrize(
    "since",
    [
        "not a cursor",
        "",
        "W10",  # base64 of []
        encode_feed_cursor(-1),
        encode_feed_cursor(10**12),  # a position this partner's feed never reached
    ],
)
async def test_a_malformed_since_is_refused_before_streaming(
    live_server: str, partner: PartnerAccess, since: str
) -> None:
    async with GraphQLSocket.open(live_server, auth(partner.token)) as socket:
        await connected(socket)
        await socket.subscribe("1", LICENSE_EVENTS, {"since": since})
        answer = await socket.receive()
    assert answer["type"] == "error" and answer["id"] == "1"
    [error] = answer["payload"]
    assert error["message"] == "'since' is not a cursor from this event feed."
    assert error["extensions"] == {"code": "INVALID_INPUT", "field": "since"}


async def test_an_empty_key_list_is_refused(live_server: str, partner: PartnerAccess) -> None:
    async with GraphQLSocket.open(live_server, auth(partner.token)) as socket:
        await connected(socket)
        await socket.subscribe("1", LICENSE_EVENTS, {"keys": []})
        answer = await socket.receive()
    assert answer["type"] == "error"
    assert answer["payload"][0]["extensions"] == {"code": "INVALID_INPUT", "field": "keys"}


@pytest.mark.parametrize("query", [LICENSE_EVENTS, STANDING_CHANGED, INVOICE_UPDATED])
async def test_a_staff_token_cannot_subscribe_to_a_partner_feed(
    live_server: str, staff_token: str, query: str
) -> None:
    async with GraphQLSocket.open(live_server, auth(staff_token)) as socket:
        await connected(socket)
        await socket.subscribe("1", query)
        answer = await socket.receive()
    assert answer["type"] == "error"
    assert answer["payload"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_subscriptions_per_connection_are_capped_by_the_setting(
    served: LiveServer, partner: PartnerAccess
) -> None:
    limit = Settings().max_subscriptions_per_connection
    async with GraphQLSocket.open(served.address, auth(partner.token)) as socket:
        await connected(socket)
        followers = served.followers()
        for number in range(limit):
            await socket.subscribe(str(number), LICENSE_EVENTS)
        await subscribed(served, followers + limit)
        await socket.subscribe("one-too-many", LICENSE_EVENTS)
        answer = await socket.receive()
        assert answer["type"] == "error" and answer["id"] == "one-too-many"
        assert answer["payload"][0]["message"] == "Subscription limit reached"

        # Completing one frees its place.
        await socket.send({"id": "0", "type": "complete"})
        await socket.subscribe("in-its-place", STANDING_CHANGED)
        [first] = await items(socket, "in-its-place", 1)
    assert first["action"] is None


async def test_standing_changed_sends_the_standing_then_each_move(
    served: LiveServer, live_api: Api, staff_token: str, clock: SettableClock
) -> None:
    partner = await enrol(live_api, staff_token)
    async with GraphQLSocket.open(served.address, auth(partner.token)) as socket:
        await connected(socket)
        await socket.subscribe("1", STANDING_CHANGED)
        [now] = await items(socket, "1", 1)
        await move_standing(served.database, partner.id, StandingEvent.PAYMENT_METHOD_ADDED, clock.now())
        [moved] = await items(socket, "1", 1)

    assert now["action"] is None and now["standing"]["state"] == "NO_PAYMENT_METHOD"
    assert {"action": "ISSUE", "code": "NO_PAYMENT_METHOD"} in now["standing"]["blockedActions"]
    assert (moved["action"], moved["fromState"], moved["toState"]) == (
        "payment_method_added",
        "NO_PAYMENT_METHOD",
        "GOOD",
    )
    assert moved["standing"]["state"] == "GOOD" and moved["standing"]["blockedActions"] == []
    assert moved["cursor"] != now["cursor"]


async def test_invoice_updated_delivers_the_invoice_when_the_month_is_closed(
    served: LiveServer, live_api: Api, good_partner: PartnerAccess, staff_token: str, clock: SettableClock
) -> None:
    await issue(live_api, good_partner.token)
    since = await event_cursor(live_api, good_partner.token)
    async with GraphQLSocket.open(served.address, auth(good_partner.token)) as socket:
        await connected(socket)
        await socket.subscribe("1", INVOICE_UPDATED, {"since": since})
        clock.advance_to(datetime(2026, 8, 1, 0, 30, tzinfo=UTC))
        closed = await close_month(live_api, "2026-07", staff_token)
        assert closed["errors"] == [] and closed["closed"] >= 1
        [update] = await items(socket, "1", 1)

    assert update["action"] == "finalize" and update["fromStatus"] == "DRAFT"
    invoice = update["invoice"]
    assert invoice["month"] == "2026-07" and invoice["status"] == update["toStatus"]
    assert invoice["total"]["amount"] > 0


async def test_invoice_updated_delivers_each_refund_staff_make(
    served: LiveServer, live_api: Api, good_partner: PartnerAccess, staff_token: str, clock: SettableClock
) -> None:
    await issue(live_api, good_partner.token)
    clock.advance_to(datetime(2026, 8, 1, 0, 30, tzinfo=UTC))
    assert (await close_month(live_api, "2026-07", staff_token))["errors"] == []
    since = await event_cursor(live_api, good_partner.token)
    invoices = await live_api.data("{ invoices(first: 1) { nodes { id } } }", token=good_partner.token)
    [invoice_id] = [node["id"] for node in invoices["invoices"]["nodes"]]
    async with GraphQLSocket.open(served.address, auth(good_partner.token)) as socket:
        await connected(socket)
        await socket.subscribe("1", INVOICE_UPDATED, {"since": since})
        refund = {"id": invoice_id, "amountMinor": 7, "reason": "Goodwill"}
        body = await live_api.data(REFUND, {"input": refund}, staff_token)
        assert body["refundInvoice"]["errors"] == []
        [update] = await items(socket, "1", 1)

    assert (update["action"], update["fromStatus"], update["toStatus"]) == ("refunded", "PAID", "PAID")
    assert update["invoice"]["id"] == invoice_id
