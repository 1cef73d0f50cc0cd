"""The invoice life cycle: draft -> open -> paid | past_due -> paid; open/past_due -> void | uncollectible."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import DomainError, ErrorCode
from domain.invoices import (
    FINAL_STATUSES,
    InvoiceEvent,
    InvoiceStatus,
    allowed_invoice_events,
    invoice_due_at,
    invoice_number,
    is_overdue,
    next_invoice_status,
)

S = InvoiceStatus
E = InvoiceEvent

# Every transition docs/rules.md ("Invoices") allows; everything else is refused.
ALLOWED = {
    (S.DRAFT, E.FINALIZE): S.OPEN,
    (S.OPEN, E.RECORD_PAYMENT): S.PAID,
    (S.OPEN, E.CHARGE_FAILED): S.PAST_DUE,
    (S.OPEN, E.DUE_DATE_PASSED): S.PAST_DUE,
    (S.OPEN, E.VOID): S.VOID,
    (S.OPEN, E.MARK_UNCOLLECTIBLE): S.UNCOLLECTIBLE,
    (S.PAST_DUE, E.RECORD_PAYMENT): S.PAID,
    (S.PAST_DUE, E.VOID): S.VOID,
    (S.PAST_DUE, E.MARK_UNCOLLECTIBLE): S.UNCOLLECTIBLE,
}
REFUSED = [(status, event) for status in S for event in E if (status, event) not in ALLOWED]


def test_month_close_finalizes_a_draft_into_an_open_invoice() -> None:
    assert next_invoice_status(S.DRAFT, E.FINALIZE) is S.OPEN


def test_successful_charge_pays_an_open_invoice() -> None:
    assert next_invoice_status(S.OPEN, E.RECORD_PAYMENT) is S.PAID


def test_failed_charge_makes_the_invoice_past_due() -> None:
    assert next_invoice_status(S.OPEN, E.CHARGE_FAILED) is S.PAST_DUE


def test_past_due_invoice_can_be_paid_later() -> None:
    assert next_invoice_status(S.PAST_DUE, E.RECORD_PAYMENT) is S.PAID


def test_zero_invoice_is_finalized_then_paid_at_once() -> None:
    assert next_invoice_status(next_invoice_status(S.DRAFT, E.FINALIZE), E.RECORD_PAYMENT) is S.PAID


@pytest.mark.parametrize(("status", "event"), list(ALLOWED), ids=lambda value: str(value))
def test_every_allowed_transition_reaches_its_status(status: InvoiceStatus, event: InvoiceEvent) -> None:
    assert next_invoice_status(status, event) is ALLOWED[(status, event)]


@pytest.mark.parametrize(("status", "event"), REFUSED, ids=lambda value: str(value))
def test_every_other_transition_is_refused_naming_the_current_status(
    status: InvoiceStatus, event: InvoiceEvent
) -> None:
    with pytest.raises(DomainError) as refused:
        next_invoice_status(status, event)
    assert refused.value.code is ErrorCode.INVALID_TRANSITION
    assert f"is {status.value}" in refused.value.message


def test_paid_void_and_uncollectible_invoices_are_final() -> None:
    assert {status for status in S if not allowed_invoice_events(status)} == FINAL_STATUSES


def test_allowed_events_match_the_transition_table() -> None:
    for status in S:
        assert set(allowed_invoice_events(status)) == {event for (s, event) in ALLOWED if s is status}


def test_paid_invoice_cannot_be_charged_again() -> None:
    with pytest.raises(DomainError) as refused:
        next_invoice_status(S.PAID, E.RECORD_PAYMENT)
    assert refused.value.message == "The invoice is paid; it cannot take 'record_payment'."


def test_invoice_number_is_the_year_and_its_sequence_number() -> None:
    assert invoice_number(2026, 123) == "2026-000123"
    assert invoice_number(2027, 1) == "2027-000001"


def test_invoice_is_due_when_finalized_unless_terms_say_otherwise() -> None:
    finalized = datetime(2026, 8, 1, 0, 5, tzinfo=UTC)
    assert invoice_due_at(finalized) == finalized
    assert invoice_due_at(finalized, days_until_due=14) == finalized + timedelta(days=14)
    with pytest.raises(ValueError):
        invoice_due_at(finalized, days_until_due=-1)


def test_open_invoice_is_overdue_once_its_due_date_has_passed() -> None:
    due = datetime(2026, 8, 15, tzinfo=UTC)
    assert not is_overdue(S.OPEN, due, due)
    assert is_overdue(S.OPEN, due, due + timedelta(seconds=1))
    assert not is_overdue(S.PAID, due, due + timedelta(days=1))
