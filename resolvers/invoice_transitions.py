"""What moves an invoice once it is finalized: each charge attempt's answer, payment, going past due, and
the refund of a second payment; standing follows the invoice (the oldest past-due invoice is its reason).

Every function here runs inside the caller's unit of work and under the partner's lock, except
`refund_duplicate`, which calls Stripe and then records what it did in a unit of work of its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.actors import Actor
from domain.invoices import UNPAID_STATUSES, Invoice, InvoiceEvent, InvoiceStatus, invoice_fact, move_invoice
from domain.payments import AttemptStatus, PaymentAttempt
from domain.standing import StandingEvent, StandingState
from payments.gateway import ChargeOutcome, GatewayRefused, PaymentGateway, WebhookEvent
from persistence.database import Database
from persistence.unit_of_work import UnitOfWork
from resolvers.standing import apply_standing_event

log = logging.getLogger("licensing.invoices")

# Stripe's answer to refunding a charge that is refunded already: the money is back, as we wanted.
ALREADY_REFUNDED = "charge_already_refunded"


@dataclass(frozen=True)
class DuplicatePayment:
    """A PaymentIntent that succeeded for an invoice another one (or nothing: a zero invoice) paid."""

    partner_id: str
    invoice_id: str
    payment_intent_id: str
    amount: int
    currency: str


@dataclass(frozen=True)
class Payment:
    """The invoice after a success was recorded, and the duplicate to refund if it paid nothing."""

    invoice: Invoice
    duplicate: DuplicatePayment | None = None


async def record_attempt_answer(
    uow: UnitOfWork, invoice: Invoice, attempt: PaymentAttempt, answer: ChargeOutcome, *, at: datetime
) -> None:
    """Store the provider's answer on an unresolved attempt and tell invoiceUpdated about it."""
    status = AttemptStatus.SUCCEEDED if answer.succeeded else AttemptStatus.FAILED
    failure_code = None if answer.succeeded else (answer.failure_code or "card_declined")
    await uow.payment_attempts.record(
        attempt.id,
        status,
        at=at,
        payment_intent_id=answer.payment_intent_id,
        failure_code=failure_code,
        decline_code=answer.decline_code,
        failure_message=answer.failure_message,
    )
    details = {
        "attempt": attempt.number,
        "status": status.value,
        "payment_method_id": attempt.payment_method_id,
        "failure_code": failure_code,
        "decline_code": answer.decline_code,
    }
    uow.collect(invoice_fact(invoice, "payment_attempt", at, details))


async def record_payment(
    uow: UnitOfWork,
    invoice: Invoice,
    *,
    at: datetime,
    request_id: str | None,
    attempt: PaymentAttempt | None,
    payment_intent_id: str | None = None,
) -> Payment:
    """Move an unpaid invoice to paid, noting which PaymentIntent paid it; a settled past-due invoice may
    restore the partner's standing. The same PaymentIntent again is a no-op; another is a duplicate."""
    if invoice.status not in UNPAID_STATUSES:
        paid_by = await uow.invoice_payments.paid_by(invoice.id)
        if payment_intent_id is None or payment_intent_id == paid_by:
            return Payment(invoice)
        duplicate = DuplicatePayment(
            invoice.partner_id, invoice.id, payment_intent_id, invoice.total, invoice.currency
        )
        return Payment(invoice, duplicate)
    details: dict[str, Any] = {}
    if attempt is not None:
        details |= {"attempt": attempt.number, "payment_method_id": attempt.payment_method_id}
    if payment_intent_id is not None:
        details["payment_intent_id"] = payment_intent_id
    paid = move_invoice(invoice, InvoiceEvent.RECORD_PAYMENT, at=at, payload=details)
    await uow.invoices.set_status(invoice.id, paid.status, paid_at=at)
    await uow.invoice_payments.add(
        invoice.id,
        payment_intent_id=payment_intent_id,
        attempt_id=None if attempt is None else attempt.id,
        at=at,
    )
    uow.collect(paid.event, request_id=request_id)
    if invoice.status is InvoiceStatus.PAST_DUE:
        await settle_standing(uow, invoice, at, request_id)
    updated = await uow.invoices.get(invoice.partner_id, invoice.id)
    assert updated is not None
    return Payment(updated)


async def settle_standing(uow: UnitOfWork, invoice: Invoice, at: datetime, request_id: str | None) -> None:
    """Good again when no invoice is past due any more; otherwise the reason moves to the oldest left."""
    standing = await uow.standing.get(invoice.partner_id)
    if standing is None or standing.state is not StandingState.PAST_DUE:
        return
    await apply_standing_event(
        uow,
        partner_id=invoice.partner_id,
        event=StandingEvent.PAST_DUE_SETTLED,
        at=at,
        invoice_id=invoice.id,
        has_payment_method=bool(await uow.payment_methods.active(invoice.partner_id)),
        request_id=request_id,
    )


async def mark_past_due(
    uow: UnitOfWork, invoice: Invoice, *, at: datetime, request_id: str | None
) -> Invoice:
    """An open invoice whose charge failed goes past due: dunning starts and standing follows."""
    if invoice.status is not InvoiceStatus.OPEN:
        return invoice
    past_due = move_invoice(invoice, InvoiceEvent.CHARGE_FAILED, at=at)
    await uow.invoices.set_status(invoice.id, past_due.status)
    uow.collect(past_due.event, request_id=request_id)
    await uow.dunning.start_dunning(invoice.id, invoice.partner_id, at)
    await apply_standing_event(
        uow,
        partner_id=invoice.partner_id,
        event=StandingEvent.INVOICE_PAST_DUE,
        at=at,
        invoice_id=invoice.id,
        request_id=request_id,
    )
    updated = await uow.invoices.get(invoice.partner_id, invoice.id)
    assert updated is not None
    return updated


async def refund_duplicate(
    database: Database,
    gateway: PaymentGateway,
    duplicate: DuplicatePayment,
    *,
    now: datetime,
    actor: Actor | None,
    webhook: WebhookEvent | None = None,
) -> bool:
    """Refund a second payment of an invoice through Stripe and record it (`duplicate_refunded`, or
    `duplicate_refund_failed` with Stripe's reason, for staff to settle by hand); True when refunded.

    The key is stable per PaymentIntent, so a redelivered webhook cannot refund twice. GatewayUnavailable
    propagates and nothing is recorded: the webhook is answered with an error and Stripe delivers it again.
    `webhook` is marked received in the same transaction as the record.
    """
    payload: dict[str, Any] = {
        "payment_intent_id": duplicate.payment_intent_id,
        "amount": duplicate.amount,
        "currency": duplicate.currency,
    }
    try:
        payload["refund_id"] = await gateway.refund_payment(
            duplicate.payment_intent_id, f"refund-{duplicate.payment_intent_id}"
        )
        refunded = True
    except GatewayRefused as error:
        refunded = error.code == ALREADY_REFUNDED
        payload["reason"] = error.message
    action = "duplicate_refunded" if refunded else "duplicate_refund_failed"
    if refunded:
        log.warning(
            "invoice %s paid again by %s: refunded", duplicate.invoice_id, duplicate.payment_intent_id
        )
    else:
        log.error(
            "invoice %s paid again by %s and Stripe refused the refund (%s): refund by hand",
            duplicate.invoice_id,
            duplicate.payment_intent_id,
            payload["reason"],
        )
    async with UnitOfWork(database, actor=actor) as uow:
        await uow.partners.lock(duplicate.partner_id)
        if webhook is not None:
            if await uow.webhook_events.seen(webhook.id):
                return refunded  # a concurrent delivery recorded it
            await uow.webhook_events.add(webhook.id, webhook.type, now, action, payload.get("reason"))
        invoice = await uow.invoices.get(duplicate.partner_id, duplicate.invoice_id)
        assert invoice is not None
        uow.collect(invoice_fact(invoice, action, now, payload))
    return refunded
