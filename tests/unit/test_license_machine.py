"""The license state machine on plain objects (the table in docs/rules.md, "Licenses")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import DomainError, ErrorCode
from domain.licenses import (
    IssueItem,
    License,
    LicenseEvent,
    Transfer,
    assign_or_move,
    check_acceptable,
    drive,
    hash_transfer_code,
    issue_license,
    receive_license,
    start_transfer,
    validate_issue_items,
)

JULY_1 = datetime(2026, 7, 1, 9, tzinfo=UTC)


def issued() -> License:
    return issue_license(product_slug="jetpack-backup", partner_id="ptr_a", at=JULY_1).license


def test_issue_starts_the_holding_at_the_issue_instant() -> None:
    transition = issue_license(product_slug="jetpack-backup", partner_id="ptr_a", at=JULY_1)
    holding = transition.license
    assert (transition.from_state, transition.to_state) == (None, "issued")
    assert holding.held_from == holding.issued_at == JULY_1
    assert holding.held_until is None
    assert holding.key.startswith("jetpack-backup_") and len(holding.key) == len("jetpack-backup_") + 32


def test_assigning_an_assigned_license_moves_it_and_keeps_the_previous_site() -> None:
    holding = issued()
    assert assign_or_move(holding, site="https://a.example", at=JULY_1).action is LicenseEvent.ASSIGN
    moved = assign_or_move(holding, site="https://b.example", at=JULY_1 + timedelta(days=1))
    assert (moved.action, moved.previous_site, moved.site) == (
        LicenseEvent.MOVE,
        "https://a.example",
        "https://b.example",
    )
    assert holding.assigned_at == JULY_1 + timedelta(days=1)


def test_unassign_returns_to_issued_and_stays_billed() -> None:
    holding = issued()
    assign_or_move(holding, site="https://a.example", at=JULY_1)
    drive(holding, LicenseEvent.UNASSIGN, at=JULY_1)
    assert (holding.state, holding.site, holding.held_until) == ("issued", None, None)


@pytest.mark.parametrize("final", [LicenseEvent.REVOKE, LicenseEvent.TRANSFER])
def test_revoked_and_transferred_are_final(final: LicenseEvent) -> None:
    holding = issued()
    drive(holding, final, at=JULY_1 + timedelta(days=9))
    assert holding.held_until == JULY_1 + timedelta(days=9)
    for event in (LicenseEvent.ASSIGN, LicenseEvent.UNASSIGN, LicenseEvent.REVOKE, LicenseEvent.TRANSFER):
        with pytest.raises(DomainError) as refused:
            drive(holding, event, at=JULY_1, site="https://a.example")
        assert refused.value.code is ErrorCode.INVALID_TRANSITION
        assert refused.value.message.startswith(f"License {holding.key} is {holding.state}; it cannot be ")


def test_a_received_license_starts_on_the_senders_site_at_acceptance() -> None:
    sent = issued()
    assign_or_move(sent, site="https://a.example", at=JULY_1)
    later = JULY_1 + timedelta(days=3)
    drive(sent, LicenseEvent.TRANSFER, at=later)
    received = receive_license(sent, partner_id="ptr_b", at=later).license
    assert (received.key, received.state, received.site) == (sent.key, "assigned", "https://a.example")
    assert received.held_from == sent.held_until == later
    unplaced = issued()
    assert receive_license(unplaced, partner_id="ptr_b", at=later).license.state == "issued"


def test_issue_items_need_each_product_once_with_1_to_100() -> None:
    with pytest.raises(DomainError) as duplicate:
        validate_issue_items([IssueItem("jetpack-scan", 1), IssueItem("jetpack-scan", 2)])
    assert duplicate.value.field == "items[1].productSlug"
    for quantity in (0, 101, -3):
        with pytest.raises(DomainError):
            validate_issue_items([IssueItem("jetpack-scan", quantity)])
    assert validate_issue_items([IssueItem("jetpack-scan", 100)])


def test_transfer_codes_expire_after_seven_days_and_cannot_be_self_accepted() -> None:
    holding = issued()
    started = start_transfer(holding, at=JULY_1)
    assert started.transfer.code_hash == hash_transfer_code(started.code) != started.code
    assert check_acceptable(started.transfer, receiver_id="ptr_b", at=JULY_1 + timedelta(days=6, hours=23))
    with pytest.raises(DomainError) as expired:
        check_acceptable(started.transfer, receiver_id="ptr_b", at=JULY_1 + timedelta(days=7))
    assert expired.value.code is ErrorCode.TRANSFER_CODE_EXPIRED
    with pytest.raises(DomainError) as own:
        check_acceptable(started.transfer, receiver_id="ptr_a", at=JULY_1)
    assert own.value.code is ErrorCode.OWN_TRANSFER
    used = Transfer(**{**started.transfer.__dict__, "status": "accepted"})
    with pytest.raises(DomainError) as invalid:
        check_acceptable(used, receiver_id="ptr_b", at=JULY_1)
    assert invalid.value.code is ErrorCode.TRANSFER_CODE_INVALID
