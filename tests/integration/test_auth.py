"""Tokens: who may call what."""

from __future__ import annotations

from persistence.database import Database
from persistence.unit_of_work import UnitOfWork
from resolvers.tokens import hash_token
from tests.integration.conftest import CREATE_PARTNER, CREATE_TOKEN, Api, PartnerAccess, enrol

VIEWER = "{ viewer { id name billingZone currency } }"


async def test_viewer_without_a_token_is_unauthenticated(api: Api) -> None:
    body = await api.call(VIEWER)
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert body["data"] is None


async def test_viewer_with_an_unknown_token_is_unauthenticated(api: Api) -> None:
    body = await api.call(VIEWER, token="plk_not-a-real-token")
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_viewer_with_a_malformed_authorization_header_is_unauthenticated(api: Api) -> None:
    body = await api.call(VIEWER, headers={"Authorization": "Basic abc"})
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_revoked_token_is_unauthenticated(api: Api, partner: PartnerAccess, staff_token: str) -> None:
    assert (await api.data(VIEWER, token=partner.token))["viewer"]["id"] == partner.id
    listed = await api.data("{ apiTokens { id } }", token=partner.token)
    (token_id,) = [token["id"] for token in listed["apiTokens"]]
    revoke = "mutation($id: ID!) { revokeApiToken(input: {id: $id}) { errors { code } } }"
    assert (await api.data(revoke, {"id": token_id}, staff_token))["revokeApiToken"]["errors"] == []
    body = await api.call(VIEWER, token=partner.token)
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_partner_token_sees_only_its_own_partner(api: Api, staff_token: str) -> None:
    first = await enrol(api, staff_token, "First Agency")
    second = await enrol(api, staff_token, "Second Agency", zone="Europe/Paris")
    assert (await api.data(VIEWER, token=first.token))["viewer"]["name"] == "First Agency"
    viewer = (await api.data(VIEWER, token=second.token))["viewer"]
    assert viewer == {
        "id": second.id,
        "name": "Second Agency",
        "billingZone": "Europe/Paris",
        "currency": "usd",
    }


async def test_partner_token_cannot_create_partners(api: Api, partner: PartnerAccess) -> None:
    body = await api.data(CREATE_PARTNER, {"input": {"name": "Sneaky"}}, partner.token)
    assert body["createPartner"]["partner"] is None
    assert body["createPartner"]["errors"][0]["code"] == "FORBIDDEN"


async def test_partner_token_cannot_mint_tokens(api: Api, partner: PartnerAccess) -> None:
    body = await api.data(CREATE_TOKEN, {"input": {"staff": True}}, partner.token)
    assert body["createApiToken"]["errors"][0]["code"] == "FORBIDDEN"


async def test_mutation_without_token_reports_unauthenticated_in_payload(api: Api) -> None:
    body = await api.data(CREATE_PARTNER, {"input": {"name": "Nobody"}})
    assert body["createPartner"]["errors"][0]["code"] == "UNAUTHENTICATED"


async def test_staff_token_for_unknown_partner_is_not_found(api: Api, staff_token: str) -> None:
    body = await api.data(CREATE_TOKEN, {"input": {"partnerId": "ptr_missing"}}, staff_token)
    assert body["createApiToken"]["errors"][0] == {
        "code": "NOT_FOUND",
        "message": "No partner 'ptr_missing'.",
        "field": "partnerId",
    }


async def test_tokens_are_stored_only_as_hashes(api: Api, partner: PartnerAccess, database: Database) -> None:
    async with UnitOfWork(database, read_only=True) as uow:
        stored = (await uow.connection.exec_driver_sql("SELECT token_hash FROM api_tokens")).scalars().all()
    assert partner.token not in stored
    assert hash_token(partner.token) in stored
