"""Invoices: one per partner and month, with the life cycle the README draws.

draft (the current month, computed live) → open (finalized at month close: number, due date)
→ paid | past_due (the charge failed, or the due date passed) → paid (paid later);
open / past_due → void or uncollectible (staff). paid, void and uncollectible are final.

Collection is automatic: the card on file is charged at finalization, so an invoice is due the moment it
is finalized (net 0 days by default; `days_until_due` is a setting). A failed charge makes it past_due at
once, and dunning retries it on later days; a zero invoice is paid at finalization.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from statemachine import State, StateMachine
from statemachine.exceptions import TransitionNotAllowed

from domain.billing import BillingMonth, Costs, LicenseCounts, ProductLine, Statement
from domain.errors import DomainError, ErrorCode
from domain.events import DomainEvent
from domain.partners import SUPPORTED_CURRENCIES

DEFAULT_DAYS_UNTIL_DUE = 0


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    PAST_DUE = "past_due"
    VOID = "void"
    UNCOLLECTIBLE = "uncollectible"


class InvoiceEvent(StrEnum):
    """What can happen to an invoice; the values are the state machine's event names."""

    FINALIZE = "finalize"
    RECORD_PAYMENT = "record_payment"
    CHARGE_FAILED = "charge_failed"
    DUE_DATE_PASSED = "due_date_passed"
    VOID = "void"
    MARK_UNCOLLECTIBLE = "mark_uncollectible"


FINAL_STATUSES = frozenset({InvoiceStatus.PAID, InvoiceStatus.VOID, InvoiceStatus.UNCOLLECTIBLE})
# Statuses in which the partner still owes the amount (what standing and dunning look at).
UNPAID_STATUSES = frozenset({InvoiceStatus.OPEN, InvoiceStatus.PAST_DUE})


class InvoiceLifecycle(StateMachine):
    """The invoice state machine; a StateMachine, so an event with no transition raises."""

    draft = State(initial=True, value=InvoiceStatus.DRAFT.value)
    open = State(value=InvoiceStatus.OPEN.value)
    past_due = State(value=InvoiceStatus.PAST_DUE.value)
    paid = State(final=True, value=InvoiceStatus.PAID.value)
    void_state = State(final=True, value=InvoiceStatus.VOID.value)
    uncollectible = State(final=True, value=InvoiceStatus.UNCOLLECTIBLE.value)

    finalize = draft.to(open)
    record_payment = open.to(paid) | past_due.to(paid)
    charge_failed = open.to(past_due)
    due_date_passed = open.to(past_due)
    void = open.to(void_state) | past_due.to(void_state)
    mark_uncollectible = open.to(uncollectible) | past_due.to(uncollectible)


def next_invoice_status(status: InvoiceStatus, event: InvoiceEvent) -> InvoiceStatus:
    """The status after `event`; INVALID_TRANSITION, naming the current status, if it cannot happen now."""
    lifecycle = InvoiceLifecycle(start_value=status.value)
    try:
        lifecycle.send(event.value)
    except TransitionNotAllowed as error:
        raise DomainError(
            ErrorCode.INVALID_TRANSITION,
            f"The invoice is {status.value}; it cannot take '{event.value}'.",
            field="status",
        ) from error
    return InvoiceStatus(lifecycle.current_state_value)


@dataclass(frozen=True)
class InvoiceMove:
    """An invoice's status after an event, and the "invoice" event that records it."""

    status: InvoiceStatus
    event: DomainEvent


def move_invoice(
    invoice: Invoice, event: InvoiceEvent, *, at: datetime, payload: Mapping[str, Any] | None = None
) -> InvoiceMove:
    """Drive the invoice machine (INVALID_TRANSITION if `event` cannot happen now) and produce its event."""
    status = next_invoice_status(invoice.status, event)
    return InvoiceMove(status, invoice_fact(invoice, event.value, at, payload, to=status))


def invoice_fact(
    invoice: Invoice,
    action: str,
    at: datetime,
    payload: Mapping[str, Any] | None = None,
    *,
    to: InvoiceStatus | None = None,
) -> DomainEvent:
    """An "invoice" event: a transition (`to`), or a fact that leaves the status as it is (a charge
    attempt's answer, a refunded duplicate, licenses revoked for non-payment)."""
    return DomainEvent(
        invoice.partner_id,
        "invoice",
        invoice.id,
        action,
        at,
        invoice.status.value,
        (to or invoice.status).value,
        {"amount": invoice.total, "currency": invoice.currency} | dict(payload or {}),
    )


def allowed_invoice_events(status: InvoiceStatus) -> list[InvoiceEvent]:
    """The events that may happen to an invoice in this status (for explanations and the UI)."""
    lifecycle = InvoiceLifecycle(start_value=status.value)
    return [InvoiceEvent(event.id) for event in lifecycle.allowed_events]


def invoice_number(year: int, sequence: int) -> str:
    """The `sequence`-th invoice finalized in `year`, e.g. 2026-000123: numbers run without gaps per year
    (invoices finalized before numbering per year kept their PL-<partner>-<month> numbers)."""
    if sequence < 1:
        raise ValueError("invoice sequence numbers start at 1")
    return f"{year:04d}-{sequence:06d}"


def invoice_due_at(finalized_at: datetime, days_until_due: int = DEFAULT_DAYS_UNTIL_DUE) -> datetime:
    """When a finalized invoice is due: at finalization by default, since the card is charged then."""
    if days_until_due < 0:
        raise ValueError("days_until_due must not be negative")
    return finalized_at + timedelta(days=days_until_due)


def is_overdue(status: InvoiceStatus, due_at: datetime, now: datetime) -> bool:
    """An open invoice whose due date has passed should take DUE_DATE_PASSED."""
    return status is InvoiceStatus.OPEN and now > due_at


@dataclass(frozen=True)
class Invoice:
    """A finalized month for one partner: what was billed, in which zone and currency, and its status."""

    id: str
    partner_id: str
    month: BillingMonth
    number: str
    status: InvoiceStatus
    zone: str
    currency: str
    period_start: datetime
    period_end: datetime
    finalized_at: datetime
    due_at: datetime
    paid_at: datetime | None
    total: int
    license_days: int
    counts: LicenseCounts
    costs: Costs
    lines: tuple[ProductLine, ...]
    # Why staff voided it or marked it uncollectible (None otherwise).
    status_reason: str | None = None


def finalize_invoice(draft: Invoice, *, at: datetime) -> tuple[Invoice, list[DomainEvent]]:
    """Close a draft through the machine: `finalize` (draft → open), and a zero invoice, which has
    nothing to collect, on to paid at once (`record_payment`); with the events those transitions cause."""
    opened = move_invoice(
        draft, InvoiceEvent.FINALIZE, at=at, payload={"number": draft.number, "month": str(draft.month)}
    )
    invoice = replace(draft, status=opened.status)
    if invoice.total != 0:
        return invoice, [opened.event]
    paid = move_invoice(invoice, InvoiceEvent.RECORD_PAYMENT, at=at)
    return replace(invoice, status=paid.status, paid_at=at), [opened.event, paid.event]


def invoiced_statement(invoice: Invoice) -> Statement:
    """The statement as it was invoiced, from its stored totals (a closed month answers what was
    billed); its day-lines are paged from storage, never loaded all at once."""
    return Statement(
        month=invoice.month,
        zone=invoice.zone,
        currency_exponent=SUPPORTED_CURRENCIES[invoice.currency],
        product_lines=invoice.lines,
        day_lines=(),
        counts=invoice.counts,
        costs=invoice.costs,
    )
