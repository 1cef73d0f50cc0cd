"""Transfers need the receiver's consent: a one-time code, valid 7 days, accepted by another partner."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from domain.clock import SettableClock
from domain.standing import StandingEvent
from persistence.database import Database
from persistence.licenses import license_transfers
from persistence.unit_of_work import UnitOfWork
from tests.integration.conftest import Api, PartnerAccess, enrol, enrol_in_good_standing, move_standing
from tests.integration.license_operations import (
    ACCEPT_TRANSFER,
    CANCEL_TRANSFER,
    COUNTS,
    LICENSE,
    REVOKE,
    START_TRANSFER,
    assign,
    fresh_site,
    issue,
    mutate,
)


async def start(api: Api, token: str, key: str) -> str:
    started = await mutate(api, token, START_TRANSFER, key=key)
    assert started["errors"] == [], started
    code: str = started["code"]
    return code


async def test_accepted_transfer_keeps_the_key_and_the_site_and_ends_the_senders_holding(
    api: Api, good_partner: PartnerAccess, staff_token: str, database: Database, clock: SettableClock
) -> None:
    receiver = await enrol_in_good_standing(api, staff_token, database, clock, "Receiver Agency")
    [key] = await issue(api, good_partner.token)
    site = fresh_site()
    await assign(api, good_partner.token, key, site)
    started = await mutate(api, good_partner.token, START_TRANSFER, key=key)
    assert started["transfer"]["status"] == "PENDING"
    assert started["transfer"]["expiresAt"] == (clock.now() + timedelta(days=7)).isoformat()
    clock.advance_to(clock.now() + timedelta(days=2))

    accepted = await mutate(api, receiver.token, ACCEPT_TRANSFER, code=started["code"])
    assert accepted["errors"] == []
    theirs = accepted["license"]
    assert (theirs["key"], theirs["state"], theirs["site"]) == (key, "ASSIGNED", site)
    assert theirs["heldFrom"] == clock.now().isoformat()

    mine = (await api.data(LICENSE, {"key": key}, good_partner.token))["license"]
    assert mine["state"] == "TRANSFERRED"
    assert mine["heldUntil"] == mine["transferredAt"] == clock.now().isoformat()
    assert [e["action"] for e in mine["events"]] == ["issue", "assign", "transfer_started", "transfer"]
    received = (await api.data(LICENSE, {"key": key}, receiver.token))["license"]
    assert [(e["action"], e["fromState"], e["toState"]) for e in received["events"]] == [
        ("receive", None, "ASSIGNED")
    ]
    sender_counts = (await api.data(COUNTS, token=good_partner.token))["licenseCounts"]
    assert (sender_counts["transferred"], sender_counts["notRevoked"]) == (1, 1)


async def test_only_a_hash_of_the_code_is_stored(
    api: Api, good_partner: PartnerAccess, database: Database
) -> None:
    [key] = await issue(api, good_partner.token)
    code = await start(api, good_partner.token, key)
    async with UnitOfWork(database, read_only=True) as uow:
        stored = (await uow.connection.execute(select(license_transfers))).mappings().all()
    assert all(code not in str(dict(row).values()) for row in stored)


async def test_a_used_code_cannot_be_used_again(
    api: Api, good_partner: PartnerAccess, staff_token: str, database: Database, clock: SettableClock
) -> None:
    receiver = await enrol_in_good_standing(api, staff_token, database, clock, "Receiver")
    third = await enrol_in_good_standing(api, staff_token, database, clock, "Third")
    [key] = await issue(api, good_partner.token)
    code = await start(api, good_partner.token, key)
    assert (await mutate(api, receiver.token, ACCEPT_TRANSFER, code=code))["errors"] == []
    for token in (third.token, receiver.token):
        again = await mutate(api, token, ACCEPT_TRANSFER, code=code)
        assert again["errors"] == [
            {
                "code": "TRANSFER_CODE_INVALID",
                "message": "This transfer code is unknown, already used or cancelled.",
                "field": "code",
            }
        ]


async def test_an_expired_code_is_refused(
    api: Api, good_partner: PartnerAccess, staff_token: str, database: Database, clock: SettableClock
) -> None:
    receiver = await enrol_in_good_standing(api, staff_token, database, clock, "Late Receiver")
    [key] = await issue(api, good_partner.token)
    code = await start(api, good_partner.token, key)
    clock.advance_to(clock.now() + timedelta(days=7))
    late = await mutate(api, receiver.token, ACCEPT_TRANSFER, code=code)
    assert late["errors"][0]["code"] == "TRANSFER_CODE_EXPIRED"
    assert (await api.data(LICENSE, {"key": key}, good_partner.token))["license"]["state"] == "ISSUED"


async def test_a_cancelled_or_replaced_code_is_refused(
    api: Api, good_partner: PartnerAccess, staff_token: str, database: Database, clock: SettableClock
) -> None:
    receiver = await enrol_in_good_standing(api, staff_token, database, clock, "Receiver")
    [key] = await issue(api, good_partner.token)
    first = await start(api, good_partner.token, key)
    second = await start(api, good_partner.token, key)  # a new code replaces the first
    assert (await mutate(api, receiver.token, ACCEPT_TRANSFER, code=first))["errors"][0]["code"] == (
        "TRANSFER_CODE_INVALID"
    )
    cancelled = await mutate(api, good_partner.token, CANCEL_TRANSFER, key=key)
    assert cancelled["transfer"]["status"] == "CANCELLED"
    assert (await mutate(api, receiver.token, ACCEPT_TRANSFER, code=second))["errors"][0]["code"] == (
        "TRANSFER_CODE_INVALID"
    )
    nothing = await mutate(api, good_partner.token, CANCEL_TRANSFER, key=key)
    assert nothing["errors"][0]["code"] == "NOT_FOUND"


async def test_revoking_cancels_the_pending_transfer(
    api: Api, good_partner: PartnerAccess, staff_token: str, database: Database, clock: SettableClock
) -> None:
    receiver = await enrol_in_good_standing(api, staff_token, database, clock, "Receiver")
    [key] = await issue(api, good_partner.token)
    code = await start(api, good_partner.token, key)
    await mutate(api, good_partner.token, REVOKE, key=key)
    refused = await mutate(api, receiver.token, ACCEPT_TRANSFER, code=code)
    assert refused["errors"][0]["code"] == "TRANSFER_CODE_INVALID"


async def test_accepting_your_own_transfer_is_refused(api: Api, good_partner: PartnerAccess) -> None:
    [key] = await issue(api, good_partner.token)
    code = await start(api, good_partner.token, key)
    refused = await mutate(api, good_partner.token, ACCEPT_TRANSFER, code=code)
    assert refused["errors"] == [
        {"code": "OWN_TRANSFER", "message": "You cannot accept your own license transfer.", "field": "code"}
    ]


async def test_an_unknown_code_is_refused(api: Api, good_partner: PartnerAccess) -> None:
    refused = await mutate(api, good_partner.token, ACCEPT_TRANSFER, code="ltc_made-up")
    assert refused["errors"][0]["code"] == "TRANSFER_CODE_INVALID"


async def test_a_revoked_license_cannot_be_offered(api: Api, good_partner: PartnerAccess) -> None:
    [key] = await issue(api, good_partner.token)
    await mutate(api, good_partner.token, REVOKE, key=key)
    refused = await mutate(api, good_partner.token, START_TRANSFER, key=key)
    assert refused["errors"][0]["message"] == f"License {key} is revoked; it cannot be transferred."


async def test_accepting_is_an_acquisition_gated_by_the_receivers_standing(
    api: Api, good_partner: PartnerAccess, staff_token: str, database: Database, clock: SettableClock
) -> None:
    receiver = await enrol(api, staff_token, "No Card Yet")
    [key] = await issue(api, good_partner.token)
    code = await start(api, good_partner.token, key)
    blocked = await mutate(api, receiver.token, ACCEPT_TRANSFER, code=code)
    assert blocked["errors"][0]["code"] == "NO_PAYMENT_METHOD"
    await move_standing(database, receiver.id, StandingEvent.PAYMENT_METHOD_ADDED, clock.now())
    assert (await mutate(api, receiver.token, ACCEPT_TRANSFER, code=code))["errors"] == []


async def test_a_key_can_come_back_to_its_first_holder(
    api: Api, good_partner: PartnerAccess, staff_token: str, database: Database, clock: SettableClock
) -> None:
    receiver = await enrol_in_good_standing(api, staff_token, database, clock, "Round Trip")
    [key] = await issue(api, good_partner.token)
    await mutate(api, receiver.token, ACCEPT_TRANSFER, code=await start(api, good_partner.token, key))
    clock.advance_to(clock.now() + timedelta(hours=1))
    back = await mutate(api, good_partner.token, ACCEPT_TRANSFER, code=await start(api, receiver.token, key))
    assert back["errors"] == []
    mine = (await api.data(LICENSE, {"key": key}, good_partner.token))["license"]
    assert mine["state"] == "ISSUED"
    assert (await mutate(api, good_partner.token, REVOKE, key=key))["license"]["state"] == "REVOKED"
