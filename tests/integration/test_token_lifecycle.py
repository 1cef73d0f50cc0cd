"""Token lifecycle: list, create with a role and an expiry, revoke, rotate; live websockets end with
their token; lastUsedAt is kept to the minute."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
import websockets

from domain.clock import SettableClock
from persistence.database import Database
from persistence.unit_of_work import UnitOfWork
from tests.integration.conftest import Api, GraphQLSocket, PartnerAccess, enrol

TOKENS = "{ apiTokens { id label role partnerId createdAt lastUsedAt expiresAt revokedAt } }"
CREATE = """
mutation($input: CreateApiTokenInput!) {
  createApiToken(input: $input) { token { id secret role expiresAt } errors { code message field } }
}"""
REVOKE = (
    "mutation($id: ID!) { revokeApiToken(input: {id: $id}) { token { revokedAt } errors { code message } } }"
)
ROTATE = (
    "mutation($id: ID!) { rotateApiToken(input: {id: $id}) { token { id secret role } errors { code } } }"
)
VIEWER = "{ viewer { id } }"


async def mint(api: Api, token: str, **input_: object) -> dict:
    body = await api.data(CREATE, {"input": input_}, token)
    assert body["createApiToken"]["errors"] == [], body
    return body["createApiToken"]["token"]


async def test_a_partner_admin_lists_its_own_tokens_without_secrets(
    api: Api, staff_token: str, partner: PartnerAccess
) -> None:
    other = await enrol(api, staff_token, "Other Agency")
    made = await mint(api, partner.token, role="LICENSES", label="deploy bot")
    listed = (await api.data(TOKENS, token=partner.token))["apiTokens"]
    assert {token["partnerId"] for token in listed} == {partner.id}
    assert [(t["label"], t["role"]) for t in listed if t["id"] == made["id"]] == [("deploy bot", "LICENSES")]
    everyone = (await api.data(TOKENS, token=staff_token))["apiTokens"]
    assert {partner.id, other.id} <= {token["partnerId"] for token in everyone}


async def test_a_licenses_token_cannot_mint_tokens(api: Api, partner: PartnerAccess) -> None:
    licenses = (await mint(api, partner.token, role="LICENSES"))["secret"]
    body = await api.data(CREATE, {"input": {"role": "READ_ONLY"}}, licenses)
    assert body["createApiToken"]["errors"][0]["code"] == "FORBIDDEN"
    assert "`tokens:manage`" in body["createApiToken"]["errors"][0]["message"]


async def test_a_partner_admin_cannot_mint_staff_tokens_or_touch_another_partners(
    api: Api, staff_token: str, partner: PartnerAccess
) -> None:
    refused = await api.data(CREATE, {"input": {"staff": True, "role": "STAFF_SUPPORT"}}, partner.token)
    assert refused["createApiToken"]["errors"][0]["code"] == "FORBIDDEN"
    other = await enrol(api, staff_token, "Other Agency")
    foreign = (await api.data(TOKENS, token=other.token))["apiTokens"][0]["id"]
    body = await api.data(REVOKE, {"id": foreign}, partner.token)
    assert body["revokeApiToken"]["errors"][0]["code"] == "NOT_FOUND"
    assert (await api.data(VIEWER, token=other.token))["viewer"]["id"] == other.id


async def test_a_staff_support_token_reads_but_cannot_manage_tokens(api: Api, staff_token: str) -> None:
    support = (await mint(api, staff_token, staff=True, role="STAFF_SUPPORT"))["secret"]
    assert (await api.data(TOKENS, token=support))["apiTokens"]
    body = await api.data(CREATE, {"input": {"staff": True}}, support)
    assert body["createApiToken"]["errors"][0]["code"] == "FORBIDDEN"


async def test_a_token_stops_working_when_it_expires(
    api: Api, partner: PartnerAccess, clock: SettableClock
) -> None:
    expires = (clock.now() + timedelta(hours=2)).isoformat()
    short = (await mint(api, partner.token, role="READ_ONLY", expiresAt=expires))["secret"]
    assert (await api.data(VIEWER, token=short))["viewer"]["id"] == partner.id
    clock.advance_to(clock.now() + timedelta(hours=2))
    body = await api.call(VIEWER, token=short)
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_rotated_out_secret_works_for_an_hour_then_stops(
    api: Api, partner: PartnerAccess, clock: SettableClock
) -> None:
    old = await mint(api, partner.token, role="BILLING", label="billing bot")
    rotated = (await api.data(ROTATE, {"id": old["id"]}, partner.token))["rotateApiToken"]["token"]
    assert rotated["role"] == "BILLING" and rotated["id"] != old["id"]
    clock.advance_to(clock.now() + timedelta(minutes=59))
    assert (await api.data(VIEWER, token=old["secret"]))["viewer"]["id"] == partner.id
    clock.advance_to(clock.now() + timedelta(minutes=1))
    assert (await api.call(VIEWER, token=old["secret"]))["errors"][0]["extensions"][
        "code"
    ] == "UNAUTHENTICATED"
    assert (await api.data(VIEWER, token=rotated["secret"]))["viewer"]["id"] == partner.id


async def test_last_used_at_is_written_at_most_once_a_minute(
    api: Api, partner: PartnerAccess, clock: SettableClock
) -> None:
    used = await mint(api, partner.token, role="READ_ONLY")

    async def last_used() -> str | None:
        listed = (await api.data(TOKENS, token=partner.token))["apiTokens"]
        return next(t["lastUsedAt"] for t in listed if t["id"] == used["id"])

    assert await last_used() is None
    await api.data(VIEWER, token=used["secret"])
    first = await last_used()
    clock.advance_to(clock.now() + timedelta(seconds=59))
    await api.data(VIEWER, token=used["secret"])
    assert await last_used() == first
    clock.advance_to(clock.now() + timedelta(seconds=1))
    await api.data(VIEWER, token=used["secret"])
    latest = await last_used()
    assert latest is not None and datetime.fromisoformat(latest) == clock.now()


async def test_revoking_a_token_closes_its_open_websocket_with_4403_within_a_second(
    live_server: str, live_api: Api, staff_token: str, partner: PartnerAccess
) -> None:
    async with GraphQLSocket.open(live_server, {"authorization": f"Bearer {partner.token}"}) as socket:
        assert (await socket.receive())["type"] == "connection_ack"
        await socket.subscribe("1", "subscription { licenseEvents { key } }")
        token_id = (await live_api.data(TOKENS, token=partner.token))["apiTokens"][0]["id"]
        await live_api.data(REVOKE, {"id": token_id}, staff_token)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await socket.receive(timeout=1)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_a_subscription_that_does_not_parse_gets_an_error_and_the_socket_stays_open(
    live_server: str, partner: PartnerAccess
) -> None:
    async with GraphQLSocket.open(live_server, {"authorization": f"Bearer {partner.token}"}) as socket:
        assert (await socket.receive())["type"] == "connection_ack"
        await socket.subscribe("bad", "subscription { licenseEvents { key ")
        error = await socket.receive()
        assert error["id"] == "bad" and error["type"] == "error"
        await socket.subscribe("good", "{ viewer { id } }")
        assert (await socket.receive())["payload"] == {"data": {"viewer": {"id": partner.id}}}


async def test_creating_rotating_and_revoking_a_token_are_events_on_the_partners_feed(
    api: Api, partner: PartnerAccess, database: Database
) -> None:
    old = await mint(api, partner.token, role="LICENSES", label="deploy bot")
    rotated = (await api.data(ROTATE, {"id": old["id"]}, partner.token))["rotateApiToken"]["token"]
    await api.data(REVOKE, {"id": rotated["id"]}, partner.token)
    async with UnitOfWork(database, read_only=True) as uow:
        recorded = [e for e in await uow.events.after(partner.id, 0) if e.stream == "api_token"]
    # The partner's own token (minted by staff in the fixture) comes first; never a secret anywhere.
    changes = [(e.subject, e.action, e.payload.get("label")) for e in recorded][-4:]
    assert changes == [
        (old["id"], "created", "deploy bot"),
        (rotated["id"], "created", "deploy bot"),
        (old["id"], "rotated", "deploy bot"),
        (rotated["id"], "revoked", "deploy bot"),
    ]
    assert recorded[-2].payload["replaced_by"] == rotated["id"]
    assert all(old["secret"] not in str(e.payload) and e.actor_token_id for e in recorded[-4:])
