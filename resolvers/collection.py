"""Collection: charging invoices (at month close, on demand, in dunning) and applying Stripe's webhooks.

Each charge is three steps, and no transaction is open while Stripe is called:
(a) under the partner's lock, check the invoice is unpaid and store a `pending` attempt with a stable
    idempotency key (`invoice-<id>-attempt-<n>`), commit;
(b) call the gateway;
(c) under the lock again, record the answer on the attempt, move the invoice through its state machine,
    move standing, record "invoice" events, commit.
A pending attempt blocks every other charge of its invoice (CONFLICT) until it is resolved: by its own
step (c), by a webhook, or (after `CollectionPolicy.in_flight`, i.e. a crash) by re-sending it with the
same key. An outage leaves the attempt `unknown` and the invoice unpaid; the next collection re-sends
that attempt with its key before trying anything else. Stripe answers a repeated key with the first
result, so an invoice is charged once; localstripe ignores keys, but a refused connection never reached
it, so there too the retry is the only charge.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.exc import IntegrityError

from domain.errors import DomainError, ErrorCode
from domain.invoices import UNPAID_STATUSES, Invoice, InvoiceEvent, InvoiceStatus, next_invoice_status
from domain.payments import (
    AttemptStatus,
    ChargeTrigger,
    CollectionPolicy,
    DunningStep,
    PaymentAttempt,
    PaymentMethod,
    attempt_idempotency_key,
    charge_order,
    dunning_decision,
    is_stale_pending,
    validate_payment_method_id,
)
from domain.standing import StandingEvent, StandingState
from payments.gateway import ChargeOutcome, GatewayRefused, GatewayUnavailable, PaymentGateway, WebhookEvent
from persistence.database import Database
from persistence.events import NewEvent
from persistence.unit_of_work import UnitOfWork
from resolvers.context import RequestContext
from resolvers.idempotency import idempotent_call, lock_and_replay, store_outcome
from resolvers.invoices import owned_invoice
from resolvers.licenses import revoke_for_nonpayment
from resolvers.payments import forget_card, mirror_default
from resolvers.standing import apply_standing_event

log = logging.getLogger("licensing.collection")

UNAVAILABLE_CODE = "gateway_unavailable"


class CollectionOutcome(StrEnum):
    PAID = "paid"  # paid now, or found paid already
    FAILED = "failed"  # every card declined, or no card on file
    UNAVAILABLE = "unavailable"  # Stripe could not be reached: nothing known to have moved; retry later
    IN_PROGRESS = "in_progress"  # another charge of the invoice is in flight


@dataclass(frozen=True)
class Collection:
    outcome: CollectionOutcome
    invoice: Invoice
    attempts: tuple[PaymentAttempt, ...] = ()
    failure_code: str | None = None


@dataclass(frozen=True)
class _Plan:
    invoice: Invoice
    attempt: PaymentAttempt | None = None
    method: PaymentMethod | None = None
    customer: str | None = None


@dataclass(frozen=True)
class Collector:
    """What collection needs besides the invoice: where to store, whom to call, the policy and the time."""

    database: Database
    gateway: PaymentGateway
    policy: CollectionPolicy
    now: datetime
    request_id: str | None = None


async def collect_invoice(
    collector: Collector,
    *,
    partner_id: str,
    invoice_id: str,
    trigger: ChargeTrigger,
    chosen: str | None = None,
    past_due_on_failure: bool = True,
) -> Collection:
    """Charge an unpaid invoice: a given card, or primary first then the others, until one succeeds.

    When all fail (or there is no card) and `past_due_on_failure`, an open invoice goes past due and the
    partner's standing with it. payInvoice passes False: a partner's own failed try changes nothing.
    """
    tried_methods: set[str] = set()
    resumed: set[str] = set()
    made: list[PaymentAttempt] = []
    last_failure: str | None = None
    while True:
        plan = await _plan_attempt(collector, partner_id, invoice_id, trigger, chosen, tried_methods, resumed)
        if plan.invoice.status not in UNPAID_STATUSES:
            return Collection(CollectionOutcome.PAID, plan.invoice, tuple(made))
        if plan.attempt is None or plan.method is None or plan.customer is None:
            break
        attempt, method = plan.attempt, plan.method
        tried_methods.add(method.id)
        resumed.add(attempt.id)
        try:
            answer = await collector.gateway.charge(
                plan.customer,
                method.stripe_id,
                attempt.amount,
                attempt.currency,
                invoice_id,
                attempt.idempotency_key,
            )
        except (GatewayUnavailable, GatewayRefused) as error:
            unknown = await _record_unknown(collector, attempt)
            log.warning("charge of invoice %s left unknown: %s", invoice_id, error)
            return Collection(
                CollectionOutcome.UNAVAILABLE, plan.invoice, (*made, unknown), failure_code=UNAVAILABLE_CODE
            )
        settled, recorded = await _settle(collector, attempt, answer)
        made.append(recorded)
        if settled.status not in UNPAID_STATUSES:
            return Collection(CollectionOutcome.PAID, settled, tuple(made))
        last_failure = answer.failure_code or "card_declined"
    invoice = plan.invoice
    if past_due_on_failure:
        invoice = await _mark_past_due(collector, partner_id, invoice_id)
    return Collection(CollectionOutcome.FAILED, invoice, tuple(made), failure_code=last_failure)


async def _plan_attempt(
    collector: Collector,
    partner_id: str,
    invoice_id: str,
    trigger: ChargeTrigger,
    chosen: str | None,
    tried_methods: set[str],
    resumed: set[str],
) -> _Plan:
    """Step (a): decide the next attempt and commit it as pending before Stripe hears of it."""
    async with UnitOfWork(collector.database) as uow:
        await uow.partners.lock(partner_id)
        invoice = await owned_invoice(uow, partner_id, invoice_id, for_update=True)
        if invoice.status not in UNPAID_STATUSES:
            return _Plan(invoice)
        attempts = await uow.payment_attempts.for_invoice(invoice_id)
        in_flight = [
            a
            for a in attempts
            if a.status is AttemptStatus.PENDING
            and not is_stale_pending(a, collector.now, collector.policy.in_flight)
        ]
        if in_flight:
            raise DomainError(
                ErrorCode.CONFLICT, f"A payment of invoice {invoice_id} is in progress; try again shortly."
            )
        customer = await uow.customers.get(partner_id)
        # An attempt whose answer never came is re-sent first, with its own key: Stripe charges it once.
        unresolved = [
            a
            for a in attempts
            if a.id not in resumed and a.status in (AttemptStatus.UNKNOWN, AttemptStatus.PENDING)
        ]
        if unresolved and customer is not None:
            attempt = unresolved[0]
            method = await uow.payment_methods.get(attempt.payment_method_id)
            await uow.payment_attempts.record(attempt.id, AttemptStatus.PENDING, at=None)
            return _Plan(invoice, attempt, method, customer)
        on_file = await uow.payment_methods.active(partner_id)
        candidates = [m for m in charge_order(on_file, chosen) if m.id not in tried_methods]
        if not candidates or customer is None:
            return _Plan(invoice)
        method = candidates[0]
        number = max((a.number for a in attempts), default=0) + 1
        attempt = PaymentAttempt(
            id="pat_" + secrets.token_hex(8),
            invoice_id=invoice_id,
            partner_id=partner_id,
            payment_method_id=method.id,
            number=number,
            idempotency_key=attempt_idempotency_key(invoice_id, number),
            status=AttemptStatus.PENDING,
            trigger=trigger,
            amount=invoice.total,
            currency=invoice.currency,
            created_at=collector.now,
        )
        await uow.payment_attempts.add(attempt)
        return _Plan(invoice, attempt, method, customer)


async def _record_unknown(collector: Collector, attempt: PaymentAttempt) -> PaymentAttempt:
    async with UnitOfWork(collector.database) as uow:
        await uow.partners.lock(attempt.partner_id)
        current = await uow.payment_attempts.get(attempt.id)
        if current is not None and current.status is AttemptStatus.PENDING:
            await uow.payment_attempts.record(
                attempt.id, AttemptStatus.UNKNOWN, at=collector.now, failure_code=UNAVAILABLE_CODE
            )
        recorded = await uow.payment_attempts.get(attempt.id)
    assert recorded is not None
    return recorded


async def _settle(
    collector: Collector, attempt: PaymentAttempt, answer: ChargeOutcome
) -> tuple[Invoice, PaymentAttempt]:
    """Step (c): record Stripe's answer; a success pays the invoice (and may settle standing)."""
    async with UnitOfWork(collector.database) as uow:
        await uow.partners.lock(attempt.partner_id)
        invoice = await owned_invoice(uow, attempt.partner_id, attempt.invoice_id, for_update=True)
        current = await uow.payment_attempts.get(attempt.id)
        if current is not None and current.status in (AttemptStatus.PENDING, AttemptStatus.UNKNOWN):
            await uow.payment_attempts.record(
                attempt.id,
                AttemptStatus.SUCCEEDED if answer.succeeded else AttemptStatus.FAILED,
                at=collector.now,
                payment_intent_id=answer.payment_intent_id,
                failure_code=None if answer.succeeded else (answer.failure_code or "card_declined"),
            )
        if answer.succeeded:
            invoice = await record_payment(
                uow, invoice, at=collector.now, request_id=collector.request_id, attempt=attempt
            )
        recorded = await uow.payment_attempts.get(attempt.id)
    assert recorded is not None
    return invoice, recorded


async def record_payment(
    uow: UnitOfWork,
    invoice: Invoice,
    *,
    at: datetime,
    request_id: str | None,
    attempt: PaymentAttempt | None,
    payment_intent_id: str | None = None,
) -> Invoice:
    """Move an unpaid invoice to paid; a settled past-due invoice may restore the partner's standing."""
    if invoice.status not in UNPAID_STATUSES:
        if invoice.status is InvoiceStatus.PAID:
            log.error("invoice %s was paid again (attempt %s): refund by hand", invoice.id, attempt)
        return invoice
    paid = next_invoice_status(invoice.status, InvoiceEvent.RECORD_PAYMENT)
    await uow.invoices.set_status(invoice.id, paid, paid_at=at)
    payload: dict[str, Any] = {"amount": invoice.total, "currency": invoice.currency}
    if attempt is not None:
        payload |= {"attempt": attempt.number, "payment_method_id": attempt.payment_method_id}
    if payment_intent_id is not None:
        payload["payment_intent_id"] = payment_intent_id
    await uow.events.append(
        NewEvent(
            partner_id=invoice.partner_id,
            stream="invoice",
            subject=invoice.id,
            action=InvoiceEvent.RECORD_PAYMENT.value,
            at=at,
            from_state=invoice.status.value,
            to_state=paid.value,
            request_id=request_id,
            payload=payload,
        )
    )
    if invoice.status is InvoiceStatus.PAST_DUE:
        await _settle_standing(uow, invoice.partner_id, at, request_id)
    updated = await uow.invoices.get(invoice.partner_id, invoice.id)
    assert updated is not None
    return updated


async def _settle_standing(uow: UnitOfWork, partner_id: str, at: datetime, request_id: str | None) -> None:
    standing = await uow.standing.get(partner_id)
    if standing is None or standing.state is not StandingState.PAST_DUE:
        return
    if await uow.collection.past_due_count(partner_id) > 0:
        return  # another invoice is still past due
    await apply_standing_event(
        uow,
        partner_id=partner_id,
        event=StandingEvent.PAST_DUE_SETTLED,
        at=at,
        has_payment_method=bool(await uow.payment_methods.active(partner_id)),
        request_id=request_id,
    )


async def _mark_past_due(collector: Collector, partner_id: str, invoice_id: str) -> Invoice:
    async with UnitOfWork(collector.database) as uow:
        await uow.partners.lock(partner_id)
        invoice = await owned_invoice(uow, partner_id, invoice_id, for_update=True)
        return await mark_past_due(uow, invoice, at=collector.now, request_id=collector.request_id)


async def mark_past_due(
    uow: UnitOfWork, invoice: Invoice, *, at: datetime, request_id: str | None
) -> Invoice:
    """An open invoice whose charge failed goes past due: dunning starts and standing follows."""
    if invoice.status is not InvoiceStatus.OPEN:
        return invoice
    past_due = next_invoice_status(invoice.status, InvoiceEvent.CHARGE_FAILED)
    await uow.invoices.set_status(invoice.id, past_due)
    await uow.events.append(
        NewEvent(
            partner_id=invoice.partner_id,
            stream="invoice",
            subject=invoice.id,
            action=InvoiceEvent.CHARGE_FAILED.value,
            at=at,
            from_state=invoice.status.value,
            to_state=past_due.value,
            request_id=request_id,
            payload={"amount": invoice.total, "currency": invoice.currency},
        )
    )
    await uow.collection.start_dunning(invoice.id, invoice.partner_id, at)
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


# -- payInvoice ----------------------------------------------------------------------------------


async def pay_invoice(
    ctx: RequestContext,
    *,
    invoice_id: str,
    payment_method_id: str | None = None,
    idempotency_key: str | None = None,
) -> Invoice:
    """The partner pays its open or past-due invoice now, with the given card or primary-then-others."""
    partner_id = ctx.partner_id()
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
    collector = Collector(ctx.database, ctx.payments(), ctx.collection, ctx.clock.now(), ctx.request_id)
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


# -- month close and dunning -----------------------------------------------------------------------


@dataclass(frozen=True)
class CollectionReport:
    paid: int = 0
    past_due: int = 0
    uncollected: int = 0  # Stripe unreachable, or a charge already in flight: a later run retries

    def add(self, collection: Collection | None) -> CollectionReport:
        if collection is None or collection.outcome in (
            CollectionOutcome.UNAVAILABLE,
            CollectionOutcome.IN_PROGRESS,
        ):
            return CollectionReport(self.paid, self.past_due, self.uncollected + 1)
        if collection.outcome is CollectionOutcome.PAID:
            return CollectionReport(self.paid + 1, self.past_due, self.uncollected)
        return CollectionReport(self.paid, self.past_due + 1, self.uncollected)


async def collect_open_invoices(
    collector: Collector, trigger: ChargeTrigger, months: list[str] | None = None
) -> CollectionReport:
    """Charge every finalized invoice not collected yet (each in its own steps; one failure stops none)."""
    async with UnitOfWork(collector.database, read_only=True) as uow:
        open_invoices = await uow.collection.open_invoices(months)
    report = CollectionReport()
    for partner_id, invoice_id in open_invoices:
        report = report.add(await _collect_quietly(collector, partner_id, invoice_id, trigger))
    return report


async def _collect_quietly(
    collector: Collector, partner_id: str, invoice_id: str, trigger: ChargeTrigger
) -> Collection | None:
    try:
        return await collect_invoice(collector, partner_id=partner_id, invoice_id=invoice_id, trigger=trigger)
    except DomainError as error:
        log.info("invoice %s not collected now: %s", invoice_id, error.message)
        return None


@dataclass(frozen=True)
class DunningReport:
    collected: CollectionReport  # open invoices an earlier run could not charge
    retried: CollectionReport
    licenses_revoked: int
    partners_revoked: int


async def run_dunning(
    database: Database,
    gateway: PaymentGateway,
    *,
    now: datetime,
    policy: CollectionPolicy,
    request_id: str | None = None,
) -> DunningReport:
    """Due collection work: charge what an outage left open, retry past-due invoices on their days, and
    revoke the licenses of partners past due for too long. Safe to run as often as you like."""
    collector = Collector(database, gateway, policy, now, request_id)
    collected = await collect_open_invoices(collector, ChargeTrigger.DUNNING)
    retried = CollectionReport()
    licenses_revoked = partners_revoked = 0
    async with UnitOfWork(database, read_only=True) as uow:
        in_dunning = await uow.collection.past_due()
    for dunning in in_dunning:
        decision = dunning_decision(
            dunning.past_due_since,
            now,
            retries_done=dunning.retries_done,
            licenses_revoked=dunning.licenses_revoked_at is not None,
            policy=policy,
        )
        if decision.step is DunningStep.RETRY:
            # Count the retry before making it, so a crash mid-retry cannot retry twice the same day.
            async with UnitOfWork(database) as uow:
                await uow.partners.lock(dunning.partner_id)
                await uow.collection.set_retries(dunning.invoice_id, decision.retries_done)
            retried = retried.add(
                await _collect_quietly(
                    collector, dunning.partner_id, dunning.invoice_id, ChargeTrigger.DUNNING
                )
            )
        elif decision.step is DunningStep.REVOKE:
            async with UnitOfWork(database) as uow:
                await uow.partners.lock(dunning.partner_id)
                current = await uow.collection.dunning(dunning.invoice_id)
                invoice = await uow.invoices.get(dunning.partner_id, dunning.invoice_id)
                if current is None or current.licenses_revoked_at is not None or invoice is None:
                    continue
                if invoice.status is not InvoiceStatus.PAST_DUE:
                    continue
                revoked = await revoke_for_nonpayment(
                    uow,
                    partner_id=dunning.partner_id,
                    invoice_id=dunning.invoice_id,
                    at=now,
                    request_id=request_id,
                )
                await uow.collection.mark_licenses_revoked(dunning.invoice_id, now)
            licenses_revoked += len(revoked)
            partners_revoked += 1
    return DunningReport(collected, retried, licenses_revoked, partners_revoked)


# -- webhooks ------------------------------------------------------------------------------------


class WebhookOutcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"  # an event we do not act on, or about nothing we know


HANDLED_EVENTS = frozenset(
    {"payment_intent.succeeded", "payment_intent.payment_failed", "payment_method.detached"}
)


async def apply_webhook(
    database: Database, gateway: PaymentGateway, event: WebhookEvent, *, now: datetime
) -> WebhookOutcome:
    """Apply a verified Stripe event once (deduplicated by its id) through the same state machines."""
    try:
        async with UnitOfWork(database) as uow:
            partner_id = await _partner_of(uow, event)
            if partner_id is not None:
                await uow.partners.lock(partner_id)
            if await uow.webhook_events.seen(event.id):
                return WebhookOutcome.DUPLICATE
            await uow.webhook_events.add(event.id, event.type, now)
            if partner_id is None or event.type not in HANDLED_EVENTS:
                return WebhookOutcome.IGNORED
            if event.type == "payment_method.detached":
                change = await _card_detached(uow, event, now)
            else:
                change = None
                await _payment_intent_event(uow, event, now)
            customer = await uow.customers.get(partner_id)
    except IntegrityError:
        # A concurrent delivery of the same event committed first.
        return WebhookOutcome.DUPLICATE
    if change is not None and change.primary_changed and customer is not None:
        await mirror_default(gateway, customer, change.new_primary)
    return WebhookOutcome.APPLIED


async def _partner_of(uow: UnitOfWork, event: WebhookEvent) -> str | None:
    subject = event.object_id
    if event.type.startswith("payment_method.") and subject:
        method = await uow.payment_methods.by_stripe_id(subject)
        return None if method is None else method.partner_id
    if event.type.startswith("payment_intent."):
        attempt = await uow.payment_attempts.by_payment_intent(subject) if subject else None
        if attempt is not None:
            return attempt.partner_id
        if event.invoice_id:
            return await uow.collection.invoice_partner(event.invoice_id)
    return None


async def _card_detached(uow: UnitOfWork, event: WebhookEvent, now: datetime) -> Any:
    method = await uow.payment_methods.by_stripe_id(event.object_id or "")
    if method is None or not method.is_active:
        return None
    return await forget_card(uow, method, now)


async def _payment_intent_event(uow: UnitOfWork, event: WebhookEvent, now: datetime) -> None:
    intent_id = event.object_id
    attempt = await uow.payment_attempts.by_payment_intent(intent_id) if intent_id else None
    invoice_id = attempt.invoice_id if attempt is not None else event.invoice_id
    partner_id = attempt.partner_id if attempt is not None else None
    if invoice_id is None:
        return
    if partner_id is None:
        partner_id = await uow.collection.invoice_partner(invoice_id)
    if partner_id is None:
        return
    invoice = await uow.invoices.get(partner_id, invoice_id, for_update=True)
    if invoice is None:
        return
    if attempt is None:
        # Our answer was lost: the unresolved attempt of this invoice is the one Stripe is telling about.
        unresolved = [
            a
            for a in await uow.payment_attempts.for_invoice(invoice_id)
            if a.status in (AttemptStatus.PENDING, AttemptStatus.UNKNOWN)
        ]
        attempt = unresolved[-1] if unresolved else None
    succeeded = event.type == "payment_intent.succeeded"
    if attempt is not None and attempt.status in (AttemptStatus.PENDING, AttemptStatus.UNKNOWN):
        problem = event.object.get("last_payment_error") or {}
        await uow.payment_attempts.record(
            attempt.id,
            AttemptStatus.SUCCEEDED if succeeded else AttemptStatus.FAILED,
            at=now,
            payment_intent_id=intent_id,
            failure_code=None if succeeded else (problem.get("code") or "card_declined"),
        )
        if not succeeded and attempt.status is AttemptStatus.UNKNOWN:
            # Only an attempt whose answer was lost: a pending one's collector is still trying other cards.
            await mark_past_due(uow, invoice, at=now, request_id=None)
    if succeeded:
        await record_payment(
            uow, invoice, at=now, request_id=None, attempt=attempt, payment_intent_id=intent_id
        )
