"""payInvoice: the partner pays its open or past-due invoice now; and how each charge of it went."""

from __future__ import annotations

from dataclasses import dataclass

from domain.access import Permission
from domain.errors import DomainError, ErrorCode
from domain.invoices import Invoice, InvoiceEvent, next_invoice_status
from domain.payments import (
    ChargeTrigger,
    PaymentAttempt,
    PaymentMethod,
    charge_order,
    validate_payment_method_id,
)
from payments.gateway import GatewayUnavailable
from resolvers.charging import CollectionOutcome, Collector, collect_invoice
from resolvers.context import RequestContext
from resolvers.idempotency import idempotent_call, lock_and_replay, store_outcome
from resolvers.invoices import owned_invoice


async def pay_invoice(
    ctx: RequestContext,
    *,
    invoice_id: str,
    payment_method_id: str | None = None,
    idempotency_key: str | None = None,
) -> Invoice:
    """The partner pays its open or past-due invoice now, with the given card or primary-then-others."""
    partner_id = ctx.partner_id(Permission.PAYMENTS_WRITE)
    if payment_method_id is not None:
        validate_payment_method_id(payment_method_id)
    call = idempotent_call(
        partner_id,
        idempotency_key,
        "payInvoice",
        {"invoiceId": invoice_id, "paymentMethodId": payment_method_id},
    )
    async with ctx.unit_of_work() as uow:
        outcome = await lock_and_replay(uow, partner_id, call)
        if outcome is not None:
            return await owned_invoice(uow, partner_id, outcome["invoice_id"])
        invoice = await owned_invoice(uow, partner_id, invoice_id)
        next_invoice_status(invoice.status, InvoiceEvent.RECORD_PAYMENT)  # INVALID_TRANSITION if paid/void
        on_file = await uow.payment_methods.active(partner_id)
        charge_order(on_file, payment_method_id)  # PAYMENT_METHOD_NOT_FOUND for a card not on file
        if not on_file:
            raise DomainError(
                ErrorCode.NO_PAYMENT_METHOD, "Add a payment method to pay this invoice.", "paymentMethodId"
            )
    collector = Collector(
        ctx.database,
        ctx.payments(),
        ctx.collection,
        ctx.clock.now(),
        ctx.request_id,
        ctx.actor,
        observer=ctx.observer,
    )
    collected = await collect_invoice(
        collector,
        partner_id=partner_id,
        invoice_id=invoice_id,
        trigger=ChargeTrigger.PAY_NOW,
        chosen=payment_method_id,
        past_due_on_failure=False,
    )
    if collected.outcome is CollectionOutcome.UNAVAILABLE:
        raise GatewayUnavailable(
            "The payment provider could not be reached; the invoice is unpaid and can be paid again."
        )
    if collected.outcome is CollectionOutcome.FAILED:
        raise DomainError(
            ErrorCode.PAYMENT_FAILED,
            f"The payment was declined ({collected.failure_code}); the invoice is still "
            f"{collected.invoice.status.value}. Try another card.",
            "paymentMethodId",
        )
    async with ctx.unit_of_work() as uow:
        if await lock_and_replay(uow, partner_id, call) is None:
            await store_outcome(uow, call, {"invoice_id": invoice_id}, ctx.clock.now())
    return collected.invoice


@dataclass(frozen=True)
class ChargeAttempt:
    """A charge attempt with the card it was made on (None if that card is unknown)."""

    attempt: PaymentAttempt
    card: PaymentMethod | None


async def invoice_payment_attempts(ctx: RequestContext, *, invoice_id: str) -> list[ChargeAttempt]:
    """Every charge of the partner's invoice, oldest first, with its card (removed cards included)."""
    partner_id = ctx.partner_id()
    async with ctx.reader() as uow:
        await owned_invoice(uow, partner_id, invoice_id)
        return [
            ChargeAttempt(attempt, await uow.payment_methods.get(attempt.payment_method_id))
            for attempt in await uow.payment_attempts.for_invoice(invoice_id)
        ]
