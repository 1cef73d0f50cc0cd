"""licenseStatus: a site's plugin, holding only the key, subscribes over a websocket without a token and
learns at once when its license is revoked, moved, unassigned or transferred; nothing about the partner
or other sites, and a burst is rate limited like validateLicense."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from app.devstripe import LocalStripe
from app.http import create_app
from domain.clock import SettableClock
from tests.integration.conftest import (
    Api,
    GraphQLSocket,
    LiveServer,
    PartnerAccess,
    enrol_in_good_standing,
    serve,
    stripe_settings,
)
from tests.integration.license_operations import (
    ACCEPT_TRANSFER,
    REVOKE,
    START_TRANSFER,
    UNASSIGN,
    assign,
    fresh_site,
    issue,
    mutate,
)
from tests.integration.test_license_checks import VALIDATE

STATUS = """
subscription($key: String!, $site: String!) {
  licenseStatus(key: $key, site: $site) { valid state productSlug reason retryAfterSeconds change }
}"""
# The fallback poll of a follower is 5 s: an answer within this came from a wake-up, not from a poll.
AT_ONCE = 2.0


def status(
    valid: bool, state: str | None, reason: str | None, change: str | None, retry: int | None = None
) -> dict[str, Any]:
    slug = None if state is None else "jetpack-backup"
    return {
        "valid": valid,
        "state": state,
        "productSlug": slug,
        "reason": reason,
        "retryAfterSeconds": retry,
        "change": change,
    }


async def next_status(socket: GraphQLSocket, operation_id: str, timeout: float = 10) -> dict[str, Any]:
    message = await socket.receive(timeout)
    assert message["id"] == operation_id and message["type"] == "next", message
    assert "errors" not in message["payload"], message
    answer: dict[str, Any] = message["payload"]["data"]["licenseStatus"]
    return answer


async def completed(socket: GraphQLSocket, operation_id: str) -> None:
    assert await socket.receive() == {"id": operation_id, "type": "complete"}


async def test_a_site_sees_its_license_moved_away_then_revoked_at_once_without_a_token(
    served: LiveServer, live_api: Api, good_partner: PartnerAccess
) -> None:
    [key] = await issue(live_api, good_partner.token)
    site, elsewhere = fresh_site(), fresh_site("elsewhere")
    await assign(live_api, good_partner.token, key, site)
    async with GraphQLSocket.open(served.address, {}) as socket:  # no token: the key is the credential
        assert (await socket.receive())["type"] == "connection_ack"
        await socket.subscribe("1", STATUS, {"key": key, "site": site})
        seen = [await next_status(socket, "1")]
        assert (await assign(live_api, good_partner.token, key, elsewhere))["errors"] == []
        seen.append(await next_status(socket, "1", AT_ONCE))
        assert (await mutate(live_api, good_partner.token, REVOKE, key=key))["errors"] == []
        seen.append(await next_status(socket, "1", AT_ONCE))
        await completed(socket, "1")
    assert seen == [
        status(True, "ASSIGNED", None, None),
        status(False, "ASSIGNED", "WRONG_SITE", "MOVED"),
        status(False, "REVOKED", "REVOKED", "REVOKED"),
    ]
    told = json.dumps(seen)
    assert elsewhere.removeprefix("https://") not in told and good_partner.id not in told


async def test_a_transfer_is_told_to_the_site_and_the_new_holders_changes_follow(
    served: LiveServer, live_api: Api, staff_token: str, clock: SettableClock
) -> None:
    sender = await enrol_in_good_standing(live_api, staff_token, served.database, clock, "Sender")
    receiver = await enrol_in_good_standing(live_api, staff_token, served.database, clock, "Receiver")
    [key] = await issue(live_api, sender.token)
    site = fresh_site()
    await assign(live_api, sender.token, key, site)
    async with GraphQLSocket.open(served.address, {}) as socket:
        assert (await socket.receive())["type"] == "connection_ack"
        await socket.subscribe("1", STATUS, {"key": key, "site": site})
        seen = [await next_status(socket, "1")]
        code = (await mutate(live_api, sender.token, START_TRANSFER, key=key))["code"]
        clock.advance_to(clock.now() + timedelta(minutes=1))  # the receiver's holding starts later
        assert (await mutate(live_api, receiver.token, ACCEPT_TRANSFER, code=code))["errors"] == []
        seen.append(await next_status(socket, "1", AT_ONCE))
        # From now on the receiver's feed is the one that wakes the site.
        assert (await mutate(live_api, receiver.token, UNASSIGN, key=key))["errors"] == []
        seen.append(await next_status(socket, "1", AT_ONCE))
        assert (await mutate(live_api, receiver.token, REVOKE, key=key))["errors"] == []
        seen.append(await next_status(socket, "1", AT_ONCE))
        await completed(socket, "1")
    assert seen == [
        status(True, "ASSIGNED", None, None),
        status(True, "ASSIGNED", None, "TRANSFERRED"),
        status(False, "ISSUED", "NOT_ASSIGNED", "UNASSIGNED"),
        status(False, "REVOKED", "REVOKED", "REVOKED"),
    ]
    assert receiver.id not in json.dumps(seen) and sender.id not in json.dumps(seen)


async def test_an_unknown_key_is_not_found_like_validate_license_says_and_the_stream_ends(
    served: LiveServer, live_api: Api
) -> None:
    site = fresh_site()
    checked = await live_api.data(VALIDATE, {"key": "jetpack-backup_" + "0" * 32, "site": site})
    async with GraphQLSocket.open(served.address, {}) as socket:
        assert (await socket.receive())["type"] == "connection_ack"
        for number, key in enumerate(["jetpack-backup_" + "0" * 32, "x", "k" * 500]):
            await socket.subscribe(str(number), STATUS, {"key": key, "site": site})
            assert await next_status(socket, str(number)) == status(False, None, "NOT_FOUND", None)
            await completed(socket, str(number))
    assert checked["validateLicense"] == {
        "valid": False,
        "state": None,
        "productSlug": None,
        "reason": "NOT_FOUND",
        "retryAfterSeconds": None,
    }


async def test_a_site_url_that_does_not_normalize_is_an_error_for_that_subscription_only(
    served: LiveServer, live_api: Api, good_partner: PartnerAccess
) -> None:
    [key] = await issue(live_api, good_partner.token)
    async with GraphQLSocket.open(served.address, {}) as socket:
        assert (await socket.receive())["type"] == "connection_ack"
        await socket.subscribe("bad", STATUS, {"key": key, "site": "not a url"})
        refused = await socket.receive()
        assert refused["type"] == "error" and refused["id"] == "bad"
        assert refused["payload"][0]["extensions"]["code"] == "INVALID_SITE"
        await socket.subscribe("good", STATUS, {"key": key, "site": fresh_site()})
        assert await next_status(socket, "good") == status(False, "ISSUED", "NOT_ASSIGNED", None)


async def test_a_socket_without_a_token_runs_nothing_that_needs_one(served: LiveServer) -> None:
    async with GraphQLSocket.open(served.address, {}) as socket:
        assert (await socket.receive())["type"] == "connection_ack"
        await socket.subscribe("1", "subscription { licenseEvents { key } }")
        refused = await socket.receive()
        assert refused["type"] == "error" and refused["id"] == "1"
        assert refused["payload"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        await socket.subscribe("2", "{ viewer { id } }")
        answer = await socket.receive()
        assert answer["payload"]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_burst_of_subscriptions_from_one_address_is_rate_limited_with_a_retry_after(
    database_url: str, clock: SettableClock, catalog: None, localstripe: LocalStripe
) -> None:
    settings = stripe_settings(database_url, localstripe).replace(license_checks_per_address="5/minute")
    app = create_app(settings, clock=clock)
    async with serve(app) as server, GraphQLSocket.open(server.address, {}) as socket:
        assert (await socket.receive())["type"] == "connection_ack"
        answers = []
        for number in range(8):
            await socket.subscribe(str(number), STATUS, {"key": "x_unknown", "site": fresh_site()})
            answers.append(await next_status(socket, str(number)))
            await completed(socket, str(number))
    assert [a["reason"] for a in answers] == ["NOT_FOUND"] * 5 + ["RATE_LIMITED"] * 3
    assert all(1 <= a["retryAfterSeconds"] <= 60 and a["state"] is None for a in answers[5:])
