"""Idempotency keys: a replay returns the first response; the same key with other input is refused."""

from __future__ import annotations

from sqlalchemy import func, select

from domain.clock import SettableClock
from persistence.database import Database
from persistence.licenses import licenses
from persistence.unit_of_work import UnitOfWork
from tests.integration.conftest import Api, PartnerAccess, enrol_in_good_standing
from tests.integration.license_operations import (
    ASSIGN,
    ISSUE,
    REVOKE,
    START_TRANSFER,
    fresh_site,
    issue,
    mutate,
)


async def held(database: Database, partner_id: str) -> int:
    async with UnitOfWork(database, read_only=True) as uow:
        statement = select(func.count()).select_from(licenses).where(licenses.c.partner_id == partner_id)
        return int((await uow.connection.execute(statement)).scalar_one())


def issue_input(quantity: int, key: str) -> dict[str, object]:
    return {
        "input": {"items": [{"productSlug": "jetpack-search", "quantity": quantity}], "idempotencyKey": key}
    }


async def test_replaying_issue_returns_the_same_licenses_and_issues_nothing_more(
    api: Api, good_partner: PartnerAccess, database: Database
) -> None:
    first = await api.data(ISSUE, issue_input(3, "order-17"), good_partner.token)
    replay = await api.data(ISSUE, issue_input(3, "order-17"), good_partner.token)
    assert replay == first
    assert await held(database, good_partner.id) == 3


async def test_the_same_key_with_other_input_is_refused(
    api: Api, good_partner: PartnerAccess, database: Database
) -> None:
    await api.data(ISSUE, issue_input(3, "order-18"), good_partner.token)
    other = await api.data(ISSUE, issue_input(4, "order-18"), good_partner.token)
    assert other["issueLicenses"]["errors"][0]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert other["issueLicenses"]["errors"][0]["field"] == "idempotencyKey"
    [key] = await issue(api, good_partner.token)
    elsewhere = await mutate(api, good_partner.token, REVOKE, key=key, idempotencyKey="order-18")
    assert elsewhere["errors"][0]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert await held(database, good_partner.id) == 4


async def test_keys_belong_to_one_partner(
    api: Api, good_partner: PartnerAccess, staff_token: str, database: Database, clock: SettableClock
) -> None:
    other = await enrol_in_good_standing(api, staff_token, database, clock, "Other")
    mine = await api.data(ISSUE, issue_input(1, "shared-key"), good_partner.token)
    theirs = await api.data(ISSUE, issue_input(1, "shared-key"), other.token)
    assert mine["issueLicenses"]["licenses"][0]["key"] != theirs["issueLicenses"]["licenses"][0]["key"]


async def test_a_refused_attempt_stores_nothing_so_the_key_can_be_retried(
    api: Api, good_partner: PartnerAccess
) -> None:
    [first, second] = await issue(api, good_partner.token, "jetpack-backup", 2)
    site = fresh_site()
    await mutate(api, good_partner.token, ASSIGN, key=first, site=site)
    taken = await mutate(api, good_partner.token, ASSIGN, key=second, site=site, idempotencyKey="place-2")
    assert taken["errors"][0]["code"] == "SITE_TAKEN"
    await mutate(api, good_partner.token, REVOKE, key=first)
    retried = await mutate(api, good_partner.token, ASSIGN, key=second, site=site, idempotencyKey="place-2")
    assert retried["errors"] == []
    assert retried["license"]["site"] == site


async def test_a_replay_shows_the_license_as_it_is_now(api: Api, good_partner: PartnerAccess) -> None:
    [key] = await issue(api, good_partner.token)
    site = fresh_site()
    first = await mutate(api, good_partner.token, ASSIGN, key=key, site=site, idempotencyKey="a-1")
    await mutate(api, good_partner.token, REVOKE, key=key)
    replay = await mutate(api, good_partner.token, ASSIGN, key=key, site=site, idempotencyKey="a-1")
    assert replay["errors"] == []
    assert (first["license"]["state"], replay["license"]["state"]) == ("ASSIGNED", "REVOKED")


async def test_a_transfer_replay_returns_the_transfer_but_never_the_code_again(
    api: Api, good_partner: PartnerAccess
) -> None:
    [key] = await issue(api, good_partner.token)
    first = await mutate(api, good_partner.token, START_TRANSFER, key=key, idempotencyKey="t-1")
    replay = await mutate(api, good_partner.token, START_TRANSFER, key=key, idempotencyKey="t-1")
    assert first["code"].startswith("ltc_")
    assert replay["code"] is None
    assert replay["transfer"]["id"] == first["transfer"]["id"]
