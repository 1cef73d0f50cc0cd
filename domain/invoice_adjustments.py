"""What staff do to a finalized invoice: void it, mark it uncollectible, or refund what was paid.

Voiding and writing off go through the invoice machine (open or past due only); a refund leaves the
invoice paid and is its own record: an amount up to what is left refundable, a reason, and Stripe's answer.
A refund row is stored (pending, with its provider idempotency key) before Stripe is called, so a lost
answer is resumed under the same key and found again at Stripe by its id, never sent as a second refund.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from domain.errors import DomainError, ErrorCode
from domain.events import DomainEvent
from domain.invoices import Invoice, InvoiceStatus, invoice_fact

MAX_REASON_LENGTH = 500


def valid_reason(reason: str) -> str:
    """The staff member's reason, trimmed: 1 to 500 characters (INVALID_INPUT otherwise)."""
    trimmed = reason.strip()
    if not trimmed or len(trimmed) > MAX_REASON_LENGTH:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"A reason has 1 to {MAX_REASON_LENGTH} characters.", "reason"
        )
    return trimmed


class RefundStatus(StrEnum):
    PENDING = "pending"  # stored, sent or about to be sent; its answer is not known yet
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # Stripe refused it: nothing was refunded


@dataclass(frozen=True)
class Refund:
    """One refund of a paid invoice, as staff asked for it and Stripe answered."""

    id: str
    invoice_id: str
    partner_id: str
    number: int  # 1, 2, ... per invoice: the order staff asked for them in
    amount: int
    reason: str
    status: RefundStatus
    # Sent to Stripe with every try of this refund: one refund per row, however often it is re-sent.
    provider_key: str
    created_at: datetime
    sent_at: datetime
    # The staff request (a digest of its token and idempotency key): its retry resumes this refund.
    request_key: str | None = None
    provider_refund_id: str | None = None
    completed_at: datetime | None = None
    failure_code: str | None = None
    failure_message: str | None = None


def refund_amount(invoice: Invoice, refunds: Sequence[Refund], requested: int | None) -> int:
    """The amount to refund: `requested`, or all that is left. Only a paid invoice is refunded
    (INVALID_TRANSITION naming its status); more than is left refundable is REFUND_EXCEEDS_PAYMENT."""
    if invoice.status is not InvoiceStatus.PAID:
        raise DomainError(
            ErrorCode.INVALID_TRANSITION,
            f"The invoice is {invoice.status.value}; only a paid invoice can be refunded.",
            "status",
        )
    if requested is not None and requested <= 0:
        raise DomainError(ErrorCode.INVALID_INPUT, "A refund amount is more than 0.", "amountMinor")
    left = refundable(invoice, refunds)
    amount = left if requested is None else requested
    if amount > left or amount == 0:
        raise DomainError(
            ErrorCode.REFUND_EXCEEDS_PAYMENT,
            f"Only {left} ({invoice.currency}, minor units) of this invoice is left to refund.",
            "amountMinor",
        )
    return amount


def refundable(invoice: Invoice, refunds: Sequence[Refund]) -> int:
    """What was paid and is not refunded yet; a refund whose answer is pending counts as refunded."""
    held = sum(r.amount for r in refunds if r.status is not RefundStatus.FAILED)
    return invoice.total - held


def refunded_amount(refunds: Sequence[Refund]) -> int:
    return sum(r.amount for r in refunds if r.status is RefundStatus.SUCCEEDED)


def in_flight(refund: Refund, now: datetime, window: timedelta) -> bool:
    """A pending refund sent less than `window` ago may still be answered: nobody else re-sends it."""
    return refund.status is RefundStatus.PENDING and now - refund.sent_at < window


def refund_event(invoice: Invoice, refund: Refund, at: datetime) -> DomainEvent:
    """The invoice event that tells what became of a refund (`refunded`, or `refund_failed`)."""
    action = "refunded" if refund.status is RefundStatus.SUCCEEDED else "refund_failed"
    details: dict[str, object] = {
        "refund_id": refund.id,
        "refund_amount": refund.amount,
        "reason": refund.reason,
    }
    if refund.provider_refund_id is not None:
        details["stripe_refund_id"] = refund.provider_refund_id
    if refund.failure_message is not None:
        details["failure"] = refund.failure_message
    return invoice_fact(invoice, action, at, details)
