"""Two conflicting requests at once: exactly one wins, the other gets a typed error.

The requests really overlap: both are in flight on the event loop, each in its own transaction. On
PostgreSQL the partner row lock and the license row lock (FOR UPDATE) order them, and across partners
the one-license-per-site index decides; on SQLite, BEGIN IMMEDIATE serializes the writers.
"""

from __future__ import annotations

import asyncio
from typing import Any

from domain.clock import SettableClock
from persistence.database import Database
from tests.integration.conftest import Api, PartnerAccess, enrol_in_good_standing
from tests.integration.license_operations import (
    ACCEPT_TRANSFER,
    ASSIGN,
    LICENSE,
    REVOKE,
    START_TRANSFER,
    fresh_site,
    issue,
    mutate,
)

ROUNDS = 5


def outcome(payload: dict[str, Any]) -> str:
    return "won" if not payload["errors"] else payload["errors"][0]["code"]


async def test_two_assigns_to_one_site_at_once_one_wins(api: Api, good_partner: PartnerAccess) -> None:
    for _ in range(ROUNDS):
        first, second = await issue(api, good_partner.token, "jetpack-backup", 2)
        site = fresh_site()
        results = await asyncio.gather(
            mutate(api, good_partner.token, ASSIGN, key=first, site=site),
            mutate(api, good_partner.token, ASSIGN, key=second, site=site),
        )
        assert sorted(outcome(r) for r in results) == ["SITE_TAKEN", "won"]


async def test_two_partners_assigning_one_site_at_once_one_wins(
    api: Api, good_partner: PartnerAccess, staff_token: str, database: Database, clock: SettableClock
) -> None:
    # Different partners take different locks: only the database's unique index can decide.
    rival = await enrol_in_good_standing(api, staff_token, database, clock, "Rival Agency")
    for _ in range(ROUNDS):
        [mine] = await issue(api, good_partner.token, "jetpack-scan")
        [theirs] = await issue(api, rival.token, "jetpack-scan")
        site = fresh_site()
        results = await asyncio.gather(
            mutate(api, good_partner.token, ASSIGN, key=mine, site=site),
            mutate(api, rival.token, ASSIGN, key=theirs, site=site),
        )
        assert sorted(outcome(r) for r in results) == ["SITE_TAKEN", "won"]


async def test_two_revokes_of_one_license_at_once_one_wins(api: Api, good_partner: PartnerAccess) -> None:
    for _ in range(ROUNDS):
        [key] = await issue(api, good_partner.token)
        results = await asyncio.gather(
            mutate(api, good_partner.token, REVOKE, key=key),
            mutate(api, good_partner.token, REVOKE, key=key),
        )
        assert sorted(outcome(r) for r in results) == ["INVALID_TRANSITION", "won"]
        history = (await api.data(LICENSE, {"key": key}, good_partner.token))["license"]["events"]
        assert [e["action"] for e in history] == ["issue", "revoke"]


async def test_revoke_racing_a_transfer_acceptance_one_wins(
    api: Api, good_partner: PartnerAccess, staff_token: str, database: Database, clock: SettableClock
) -> None:
    receiver = await enrol_in_good_standing(api, staff_token, database, clock, "Eager Receiver")
    for _ in range(ROUNDS):
        [key] = await issue(api, good_partner.token)
        code = (await mutate(api, good_partner.token, START_TRANSFER, key=key))["code"]
        revoke, accept = await asyncio.gather(
            mutate(api, good_partner.token, REVOKE, key=key),
            mutate(api, receiver.token, ACCEPT_TRANSFER, code=code),
        )
        assert sorted([outcome(revoke), outcome(accept)]) in (
            ["TRANSFER_CODE_INVALID", "won"],  # revoked first: the transfer was cancelled with it
            ["INVALID_TRANSITION", "won"],  # accepted first: the sender no longer holds it
        )


async def test_two_receivers_accepting_one_code_at_once_one_wins(
    api: Api, good_partner: PartnerAccess, staff_token: str, database: Database, clock: SettableClock
) -> None:
    one = await enrol_in_good_standing(api, staff_token, database, clock, "One")
    two = await enrol_in_good_standing(api, staff_token, database, clock, "Two")
    for _ in range(ROUNDS):
        [key] = await issue(api, good_partner.token)
        code = (await mutate(api, good_partner.token, START_TRANSFER, key=key))["code"]
        results = await asyncio.gather(
            mutate(api, one.token, ACCEPT_TRANSFER, code=code),
            mutate(api, two.token, ACCEPT_TRANSFER, code=code),
        )
        assert sorted(outcome(r) for r in results) == ["TRANSFER_CODE_INVALID", "won"]
