"""What staff may refund and with which reason: the rules, on plain values."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from domain.billing import BillingMonth, Costs, LicenseCounts
from domain.errors import DomainError, ErrorCode
from domain.invoice_adjustments import (
    Refund,
    RefundStatus,
    refund_amount,
    refundable,
    refunded_amount,
    valid_reason,
)
from domain.invoices import Invoice, InvoiceStatus

AT = datetime(2026, 8, 2, tzinfo=UTC)
PAID = Invoice(
    id="inv_1",
    partner_id="ptr_a",
    month=BillingMonth(2026, 7),
    number="2026-000001",
    status=InvoiceStatus.PAID,
    zone="UTC",
    currency="usd",
    period_start=datetime(2026, 7, 1, tzinfo=UTC),
    period_end=datetime(2026, 8, 1, tzinfo=UTC),
    finalized_at=AT,
    due_at=AT,
    paid_at=AT,
    total=1000,
    license_days=31,
    counts=LicenseCounts(0, 1),
    costs=Costs(0, 1000),
    lines=(),
)


def refund(amount: int, status: RefundStatus, number: int = 1) -> Refund:
    return Refund(
        f"rf_{number}", "inv_1", "ptr_a", number, amount, "why", status, f"refund-rf_{number}", AT, AT
    )


def test_without_an_amount_everything_left_is_refunded_and_pending_refunds_count_as_refunded() -> None:
    earlier = [refund(300, RefundStatus.SUCCEEDED), refund(200, RefundStatus.PENDING, 2)]
    earlier.append(refund(400, RefundStatus.FAILED, 3))

    assert refund_amount(PAID, earlier, None) == 500
    assert refundable(PAID, earlier) == 500
    assert refunded_amount(earlier) == 300


@pytest.mark.parametrize(("requested", "code"), [(501, "REFUND_EXCEEDS_PAYMENT"), (0, "INVALID_INPUT")])
def test_more_than_is_left_or_nothing_is_refused(requested: int, code: str) -> None:
    with pytest.raises(DomainError) as refused:
        refund_amount(PAID, [refund(500, RefundStatus.SUCCEEDED)], requested)
    assert (refused.value.code, refused.value.field) == (ErrorCode(code), "amountMinor")


def test_a_fully_refunded_invoice_has_nothing_left_to_refund() -> None:
    with pytest.raises(DomainError) as refused:
        refund_amount(PAID, [refund(1000, RefundStatus.SUCCEEDED)], None)
    assert refused.value.code is ErrorCode.REFUND_EXCEEDS_PAYMENT


@pytest.mark.parametrize("status", [InvoiceStatus.OPEN, InvoiceStatus.PAST_DUE, InvoiceStatus.VOID])
def test_only_a_paid_invoice_is_refunded(status: InvoiceStatus) -> None:
    with pytest.raises(DomainError) as refused:
        refund_amount(dataclasses.replace(PAID, status=status), [], 100)
    assert refused.value.code is ErrorCode.INVALID_TRANSITION
    assert f"The invoice is {status.value}" in refused.value.message


def test_a_reason_is_trimmed_and_has_1_to_500_characters() -> None:
    assert valid_reason("  Billed twice\n") == "Billed twice"
    assert valid_reason("x" * 500) == "x" * 500
    for bad in ("", "   ", "x" * 501):
        with pytest.raises(DomainError) as refused:
            valid_reason(bad)
        assert (refused.value.code, refused.value.field) == (ErrorCode.INVALID_INPUT, "reason")
