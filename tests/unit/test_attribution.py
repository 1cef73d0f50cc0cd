"""Actors, who sees which part of them, the audit log's filter, and what licenseStatus tells a site."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from domain.actors import DUNNING, MONTH_CLOSE, Actor, ActorKind, SystemJob
from domain.audit_log import AuditFilter
from domain.errors import DomainError, ErrorCode
from domain.license_checks import CheckReason, LicenseCheck, StatusChange, check_license, status_update
from domain.licenses import License

SITE = "https://client.example.com"
OTHER = "https://other.example.com"
PARTNER_TOKEN = Actor.token("tok_a", "deploy bot", "ptr_a")
STAFF_TOKEN = Actor.token("tok_s", "ops alice", None)


def test_a_system_job_is_a_small_value_a_new_job_only_names() -> None:
    assert Actor.system(DUNNING).kind is ActorKind.SYSTEM
    assert Actor.system(SystemJob("partner-webhooks")).job == "partner-webhooks"
    for bad in ("", "Dunning", "month close", "-close", "close-", "x" * 33):
        with pytest.raises(ValueError):
            SystemJob(bad)


def test_a_partner_sees_its_own_tokens_but_of_staff_and_other_partners_only_the_kind() -> None:
    assert PARTNER_TOKEN.seen_by("ptr_a").label == "deploy bot"
    assert PARTNER_TOKEN.seen_by(None).token_id == "tok_a"  # staff see everything
    foreign = PARTNER_TOKEN.seen_by("ptr_b")
    assert (foreign.kind, foreign.token_id, foreign.label) == (ActorKind.TOKEN, None, None)
    staff = STAFF_TOKEN.seen_by("ptr_a")
    assert (staff.kind, staff.token_id, staff.label) == (ActorKind.STAFF, None, None)
    closing = Actor.system(MONTH_CLOSE).seen_by("ptr_a")
    assert (closing.kind, closing.job) == (ActorKind.SYSTEM, "month-close")
    assert Actor().seen_by("ptr_a").kind is ActorKind.UNKNOWN


@pytest.mark.parametrize(
    ("where", "field"),
    [
        (
            AuditFilter(since=datetime(2026, 7, 2, tzinfo=UTC), until=datetime(2026, 7, 1, tzinfo=UTC)),
            "until",
        ),
        (AuditFilter(since=datetime(2026, 7, 1)), "since"),
        (AuditFilter(kinds=frozenset()), "kinds"),
        (AuditFilter(actions=frozenset({"x" * 33})), "actions"),
        (AuditFilter(actor_job=""), "actorJob"),
        (AuditFilter(since=datetime.fromisoformat("0001-01-01T00:00:00+05:00")), "since"),
    ],
)
def test_an_audit_filter_that_makes_no_sense_is_invalid_input_on_its_field(
    where: AuditFilter, field: str
) -> None:
    with pytest.raises(DomainError) as refused:
        where.checked()
    assert (refused.value.code, refused.value.field) == (ErrorCode.INVALID_INPUT, field)


def holding(state: str = "assigned", site: str | None = SITE, holding_id: str = "lic_1") -> License:
    return License(
        id=holding_id, key="backup_k", partner_id="ptr_1", product_slug="backup", state=state, site=site
    )


def told(before: License) -> LicenseCheck:
    return check_license(before, "backup_k", SITE)


@pytest.mark.parametrize(
    ("before", "after", "change", "reason"),
    [
        (holding(), holding(site=OTHER), StatusChange.MOVED, CheckReason.WRONG_SITE),
        (holding(site=OTHER), holding(), StatusChange.MOVED, None),
        (holding(), holding("issued", None), StatusChange.UNASSIGNED, CheckReason.NOT_ASSIGNED),
        (holding("issued", None), holding(), StatusChange.ASSIGNED, None),
        (holding(), holding("revoked"), StatusChange.REVOKED, CheckReason.REVOKED),
        (holding(), holding(holding_id="lic_2"), StatusChange.TRANSFERRED, None),
    ],
)
def test_a_site_is_told_each_change_of_its_own_answer(
    before: License, after: License, change: StatusChange, reason: CheckReason | None
) -> None:
    update = status_update(before, after, "backup_k", SITE, told(before))
    assert update is not None
    assert (update.change, update.check.reason, update.check.valid) == (change, reason, reason is None)


def test_a_site_learns_nothing_of_moves_and_transfers_between_other_sites() -> None:
    elsewhere = holding(site=OTHER)
    assert (
        status_update(elsewhere, holding(site="https://third.example.com"), "backup_k", SITE, told(elsewhere))
        is None
    )
    assert (
        status_update(elsewhere, holding(site=OTHER, holding_id="lic_2"), "backup_k", SITE, told(elsewhere))
        is None
    )
    assert status_update(holding(), holding(), "backup_k", SITE, told(holding())) is None
