"""Staff adjustments of a finalized invoice: voidInvoice, markInvoiceUncollectible and refundInvoice.

Void and uncollectible move the invoice through its machine under the partner's lock, in one
transaction with the standing they restore. A refund calls Stripe, so it runs in three steps, like a
charge: (1) under the lock, check the amount and store the refund pending with its Stripe key;
(2) call Stripe's Refunds API; (3) record the answer with its event. A lost answer leaves the refund
pending (it still counts against what is refundable); once it is no longer in flight, the next
refundInvoice of the invoice looks it up at Stripe by our id and re-sends it under the same key only if
Stripe has none, so it is never refunded twice. See the README, "Staff invoice operations".
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import replace

from domain.access import Permission
from domain.errors import DomainError, ErrorCode
from domain.invoice_adjustments import (
    Refund,
    RefundStatus,
    in_flight,
    refund_amount,
    refund_event,
    valid_reason,
)
from domain.invoices import Invoice, InvoiceEvent, InvoiceStatus, move_invoice
from payments.gateway import GatewayRefused
from persistence.unit_of_work import UnitOfWork
from resolvers.context import RequestContext
from resolvers.idempotency import (
    IdempotentCall,
    idempotent_call,
    replay_race,
    staff_scope,
    store_outcome,
    stored_outcome,
)
from resolvers.invoice_transitions import settle_standing
from resolvers.invoices import owned_invoice


async def void_invoice(
    ctx: RequestContext, *, invoice_id: str, reason: str, idempotency_key: str | None = None
) -> Invoice:
    """Staff: cancel an open or past-due invoice; the partner owes nothing for it any more."""
    return await _write_off(ctx, InvoiceEvent.VOID, "voidInvoice", invoice_id, reason, idempotency_key)


async def mark_invoice_uncollectible(
    ctx: RequestContext, *, invoice_id: str, reason: str, idempotency_key: str | None = None
) -> Invoice:
    """Staff: give up collecting an open or past-due invoice (it stays on record as a bad debt)."""
    return await _write_off(
        ctx, InvoiceEvent.MARK_UNCOLLECTIBLE, "markInvoiceUncollectible", invoice_id, reason, idempotency_key
    )


async def _write_off(
    ctx: RequestContext,
    event: InvoiceEvent,
    operation: str,
    invoice_id: str,
    reason: str,
    idempotency_key: str | None,
) -> Invoice:
    """Move the invoice to void or uncollectible with the reason; dunning stops (it only retries past-due
    invoices) and a partner past due because of it alone is in good standing again."""
    principal = ctx.require_staff(Permission.INVOICE_ADJUST)
    reason = valid_reason(reason)
    call = idempotent_call(
        staff_scope(principal), idempotency_key, operation, {"id": invoice_id, "reason": reason}
    )
    async with replay_race(), ctx.unit_of_work() as uow:
        invoice = await _locked_invoice(uow, invoice_id)
        if await stored_outcome(uow, call) is not None:
            return invoice
        now = ctx.clock.now()
        moved = move_invoice(invoice, event, at=now, payload={"reason": reason})
        await uow.invoices.set_status(invoice.id, moved.status, reason=reason)
        uow.collect(moved.event, request_id=ctx.request_id)
        if invoice.status is InvoiceStatus.PAST_DUE:
            await settle_standing(uow, invoice, now, ctx.request_id)
        await store_outcome(uow, call, {"invoice_id": invoice.id}, now)
        return await owned_invoice(uow, None, invoice.id)


async def _locked_invoice(uow: UnitOfWork, invoice_id: str) -> Invoice:
    """Any partner's invoice (staff), read under its partner's lock; NOT_FOUND if there is none."""
    partner_id = await uow.dunning.invoice_partner(invoice_id)
    if partner_id is None:
        raise DomainError(ErrorCode.NOT_FOUND, f"No invoice '{invoice_id}'.", field="id")
    await uow.partners.lock(partner_id)
    return await owned_invoice(uow, partner_id, invoice_id)


async def invoice_refunds(ctx: RequestContext, *, invoice_id: str) -> list[Refund]:
    """The refunds of an invoice the caller may read (its partner, or staff), oldest first."""
    owner = ctx.records_owner()
    async with ctx.reader() as uow:
        await owned_invoice(uow, owner, invoice_id)
        return await uow.refunds.for_invoice(invoice_id)


async def refund_invoice(
    ctx: RequestContext,
    *,
    invoice_id: str,
    reason: str,
    amount_minor: int | None = None,
    idempotency_key: str | None = None,
) -> Invoice:
    """Staff: give back all or part of what a paid invoice's PaymentIntent collected, through Stripe."""
    principal = ctx.require_staff(Permission.INVOICE_ADJUST)
    reason = valid_reason(reason)
    call = idempotent_call(
        staff_scope(principal),
        idempotency_key,
        "refundInvoice",
        {"id": invoice_id, "amountMinor": amount_minor, "reason": reason},
    )
    async with ctx.unit_of_work() as uow:
        invoice = await _locked_invoice(uow, invoice_id)
        if await stored_outcome(uow, call) is not None:
            return invoice
        lost = await _take_lost_refunds(ctx, uow, invoice)
        payment_intent_id = await _payment_intent_of(uow, invoice) if lost else ""
    for refund in lost:
        refusal = await _send_refund(ctx, invoice, refund, payment_intent_id, resumed=True)
        if call is not None and refund.request_key == _request_key(call):
            # This very request's refund had lost its answer: it is settled now, not made again.
            _raise_refusal(refusal)
            return await _answer(ctx, call, invoice_id)
    async with ctx.unit_of_work() as uow:
        invoice = await _locked_invoice(uow, invoice_id)
        now = ctx.clock.now()
        refunds = await uow.refunds.for_invoice(invoice_id)
        if any(in_flight(r, now, ctx.collection.in_flight) for r in refunds):
            raise _refund_in_flight()
        amount = refund_amount(invoice, refunds, amount_minor)
        payment_intent_id = await _payment_intent_of(uow, invoice)
        refund_id = "rf_" + secrets.token_hex(8)
        refund = Refund(
            id=refund_id,
            invoice_id=invoice.id,
            partner_id=invoice.partner_id,
            number=len(refunds) + 1,
            amount=amount,
            reason=reason,
            status=RefundStatus.PENDING,
            provider_key=f"refund-{refund_id}",
            created_at=now,
            sent_at=now,
            request_key=None if call is None else _request_key(call),
        )
        await uow.refunds.add(refund)
    _raise_refusal(await _send_refund(ctx, invoice, refund, payment_intent_id, resumed=False))
    return await _answer(ctx, call, invoice_id)


async def _take_lost_refunds(ctx: RequestContext, uow: UnitOfWork, invoice: Invoice) -> list[Refund]:
    """Pending refunds of the invoice whose answer was lost, marked as being re-sent now (CONFLICT while
    one is still in flight: its own request may yet be answered)."""
    now = ctx.clock.now()
    pending = [r for r in await uow.refunds.for_invoice(invoice.id) if r.status is RefundStatus.PENDING]
    if any(in_flight(r, now, ctx.collection.in_flight) for r in pending):
        raise _refund_in_flight()
    for refund in pending:
        await uow.refunds.resend(refund.id, now)
    return pending


def _request_key(call: IdempotentCall) -> str:
    """The staff request a refund was made by: its idempotency key, which is kept per staff token."""
    return hashlib.sha256(f"{call.scope}\n{call.key}".encode()).hexdigest()


def _refund_in_flight() -> DomainError:
    return DomainError(
        ErrorCode.CONFLICT,
        "A refund of this invoice is waiting for Stripe's answer; try again in a few minutes.",
        "id",
    )


async def _payment_intent_of(uow: UnitOfWork, invoice: Invoice) -> str:
    """The PaymentIntent that paid the invoice; a zero invoice was paid without one: nothing to refund."""
    payment_intent_id = await uow.invoice_payments.paid_by(invoice.id)
    if payment_intent_id is None:
        raise DomainError(
            ErrorCode.REFUND_EXCEEDS_PAYMENT,
            "The invoice was paid without a charge: nothing to refund.",
            "id",
        )
    return payment_intent_id


async def _send_refund(
    ctx: RequestContext, invoice: Invoice, refund: Refund, payment_intent_id: str, *, resumed: bool
) -> GatewayRefused | None:
    """Ask Stripe for the refund (a resumed one is first looked for there: Stripe forgets idempotency
    keys after 24 hours) and record the answer with its event; Stripe's refusal is recorded as failed
    and returned. Stripe unreachable: GatewayUnavailable, and the refund stays pending to be resumed."""
    gateway = ctx.payments()
    refusal: GatewayRefused | None = None
    try:
        stripe_id = await gateway.find_refund(payment_intent_id, refund.id) if resumed else None
        if stripe_id is None:
            stripe_id = await gateway.refund_payment(
                payment_intent_id, refund.provider_key, amount_minor=refund.amount, refund_id=refund.id
            )
        answered = replace(refund, status=RefundStatus.SUCCEEDED, provider_refund_id=stripe_id)
    except GatewayRefused as error:
        refusal = error
        answered = replace(
            refund, status=RefundStatus.FAILED, failure_code=error.code, failure_message=error.message
        )
    now = ctx.clock.now()
    async with ctx.unit_of_work() as uow:
        current = await _locked_invoice(uow, invoice.id)
        await uow.refunds.record(
            refund.id,
            answered.status,
            at=now,
            provider_refund_id=answered.provider_refund_id,
            failure_code=answered.failure_code,
            failure_message=answered.failure_message,
        )
        uow.collect(refund_event(current, answered, now), request_id=ctx.request_id)
    return refusal


def _raise_refusal(refusal: GatewayRefused | None) -> None:
    if refusal is not None:
        raise DomainError(
            ErrorCode.REFUND_REFUSED,
            f"Stripe refused the refund ({refusal.code}): {refusal.message} Nothing was refunded.",
            "amountMinor",
        )


async def _answer(ctx: RequestContext, call: IdempotentCall | None, invoice_id: str) -> Invoice:
    """Keep the outcome for the idempotency key and answer the invoice as it is now."""
    async with replay_race(), ctx.unit_of_work() as uow:
        invoice = await _locked_invoice(uow, invoice_id)
        if await stored_outcome(uow, call) is None:
            await store_outcome(uow, call, {"invoice_id": invoice_id}, ctx.clock.now())
        return invoice
