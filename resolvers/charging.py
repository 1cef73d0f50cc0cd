"""Charging an unpaid invoice: primary card first, then the others, one attempt at a time.

Each attempt goes through these steps, and no transaction is open while Stripe is called:
(a) under the partner's lock, check the invoice is unpaid and store a `pending` attempt with a stable
    idempotency key (`invoice-<id>-attempt-<n>`), commit;
(b) create the PaymentIntent unconfirmed under that key, and store its id on the attempt, commit;
(c) confirm it (the only step that moves money);
(d) under the lock again, record the answer on the attempt and move the invoice and standing, commit.
A pending attempt blocks every other charge of its invoice (CONFLICT) until it is resolved: by its own
step (d), by a webhook, or (after `CollectionPolicy.in_flight`, i.e. a crash) by being resumed. Only a
lost answer leaves an attempt `unknown`; the next collection resumes it before trying anything else:
by its PaymentIntent id when that was stored (retrieve, and confirm only if it still needs it), else by
creating it again under its key. Stripe forgets keys after 24 hours, but an intent is only ever confirmed
once its id is stored, so a re-created one can never be a second charge. A refusal (an invalid request,
a reused key) is an answer: a failed attempt with its reason, and the next card is tried.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from domain.actors import Actor
from domain.errors import DomainError, ErrorCode
from domain.invoices import UNPAID_STATUSES, Invoice
from domain.payments import (
    AttemptStatus,
    ChargeTrigger,
    CollectionPolicy,
    PaymentAttempt,
    PaymentMethod,
    attempt_idempotency_key,
    charge_order,
    is_stale_pending,
)
from payments.gateway import ChargeOutcome, GatewayRefused, GatewayUnavailable, PaymentGateway
from persistence.database import Database
from persistence.unit_of_work import UnitOfWork
from resolvers.invoice_transitions import (
    mark_past_due,
    record_attempt_answer,
    record_payment,
    refund_duplicate,
)
from resolvers.invoices import owned_invoice
from resolvers.observation import NO_OBSERVER, ChargeAnswer, Observer

log = logging.getLogger("licensing.charging")

UNAVAILABLE_CODE = "gateway_unavailable"


class CollectionOutcome(StrEnum):
    PAID = "paid"  # paid now, or found paid already
    FAILED = "failed"  # every card declined or was refused, or no card on file
    UNAVAILABLE = "unavailable"  # Stripe's answer was lost: the attempt is unknown; retry later
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
    """What collection needs besides the invoice: where to store, whom to call, the policy, the time, and
    who is collecting (the events record it: a partner's token paying, or a job such as dunning)."""

    database: Database
    gateway: PaymentGateway
    policy: CollectionPolicy
    now: datetime
    request_id: str | None = None
    actor: Actor | None = None
    # Told each charge's answer (the app counts them by outcome).
    observer: Observer = NO_OBSERVER

    def writer(self) -> UnitOfWork:
        """A unit of work whose events name this collector's actor."""
        return UnitOfWork(self.database, actor=self.actor, request_id=self.request_id)


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
        attempt = plan.attempt
        tried_methods.add(plan.method.id)
        resumed.add(attempt.id)
        refused = False
        try:
            answer = await _send(collector, plan.customer, plan.method, attempt)
        except GatewayUnavailable as error:
            unknown = await _record_unknown(collector, attempt)
            collector.observer.charge_answered(ChargeAnswer.UNKNOWN)
            log.warning("charge of invoice %s left unknown: %s", invoice_id, error)
            return Collection(
                CollectionOutcome.UNAVAILABLE, plan.invoice, (*made, unknown), failure_code=UNAVAILABLE_CODE
            )
        except GatewayRefused as error:
            log.warning("charge of invoice %s refused: %s", invoice_id, error.message)
            refused = True
            answer = ChargeOutcome("failed", None, failure_code=error.code, failure_message=error.message)
        settled, recorded = await _settle(collector, attempt, answer)
        collector.observer.charge_answered(_charge_answer(answer, refused))
        made.append(recorded)
        if settled.status not in UNPAID_STATUSES:
            return Collection(CollectionOutcome.PAID, settled, tuple(made))
        last_failure = answer.failure_code or "card_declined"
    invoice = plan.invoice
    if past_due_on_failure:
        invoice = await _mark_past_due(collector, partner_id, invoice_id)
    return Collection(CollectionOutcome.FAILED, invoice, tuple(made), failure_code=last_failure)


def _charge_answer(answer: ChargeOutcome, refused: bool) -> ChargeAnswer:
    if answer.succeeded:
        return ChargeAnswer.SUCCEEDED
    return ChargeAnswer.FAILED if refused else ChargeAnswer.DECLINED


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
    async with collector.writer() as uow:
        await uow.partners.lock(partner_id)
        invoice = await owned_invoice(uow, partner_id, invoice_id, for_update=True)
        if invoice.status not in UNPAID_STATUSES:
            return _Plan(invoice)
        attempts = await uow.payment_attempts.for_invoice(invoice_id)
        if any(
            a.status is AttemptStatus.PENDING
            and not is_stale_pending(a, collector.now, collector.policy.in_flight)
            for a in attempts
        ):
            raise DomainError(
                ErrorCode.CONFLICT, f"A payment of invoice {invoice_id} is in progress; try again shortly."
            )
        customer = await uow.customers.get(partner_id)
        # An attempt whose answer never came is resumed first: it may have charged already.
        unresolved = [a for a in attempts if a.id not in resumed and a.is_unresolved]
        if unresolved and customer is not None:
            attempt = dataclasses.replace(unresolved[0], status=AttemptStatus.PENDING, sent_at=collector.now)
            method = await uow.payment_methods.get(attempt.payment_method_id)
            # In flight again from now, so a concurrent collector answers CONFLICT instead of resuming too.
            await uow.payment_attempts.resend(attempt.id, collector.now)
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
            sent_at=collector.now,
        )
        await uow.payment_attempts.add(attempt)
        return _Plan(invoice, attempt, method, customer)


async def _send(
    collector: Collector, customer: str, method: PaymentMethod, attempt: PaymentAttempt
) -> ChargeOutcome:
    """Steps (b) and (c), or the resumption of an attempt whose PaymentIntent is known."""
    gateway = collector.gateway
    if attempt.payment_intent_id is not None:
        return await gateway.resume_payment_intent(attempt.payment_intent_id)
    intent_id = await gateway.create_payment_intent(
        customer,
        method.stripe_id,
        attempt.amount,
        attempt.currency,
        attempt.invoice_id,
        attempt.idempotency_key,
    )
    await _link_intent(collector, attempt, intent_id)
    return await gateway.confirm_payment_intent(intent_id)


async def _link_intent(collector: Collector, attempt: PaymentAttempt, intent_id: str) -> None:
    """Store the PaymentIntent's id before confirming it: from now on a lost answer is resumed by id."""
    async with collector.writer() as uow:
        await uow.partners.lock(attempt.partner_id)
        current = await uow.payment_attempts.get(attempt.id)
        if current is None or current.payment_intent_id not in (None, intent_id):
            # Another collector resumed this attempt and linked its own intent: leave ours unconfirmed.
            raise DomainError(
                ErrorCode.CONFLICT, f"A payment of invoice {attempt.invoice_id} is in progress; try again."
            )
        await uow.payment_attempts.link_payment_intent(attempt.id, intent_id)


async def _record_unknown(collector: Collector, attempt: PaymentAttempt) -> PaymentAttempt:
    async with collector.writer() as uow:
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
    """Step (d): record Stripe's answer; a success pays the invoice (and may settle standing)."""
    async with collector.writer() as uow:
        await uow.partners.lock(attempt.partner_id)
        invoice = await owned_invoice(uow, attempt.partner_id, attempt.invoice_id, for_update=True)
        current = await uow.payment_attempts.get(attempt.id)
        if current is not None and current.is_unresolved:
            await record_attempt_answer(uow, invoice, current, answer, at=collector.now)
        payment = None
        if answer.succeeded:
            payment = await record_payment(
                uow,
                invoice,
                at=collector.now,
                request_id=collector.request_id,
                attempt=attempt,
                payment_intent_id=answer.payment_intent_id,
            )
            invoice = payment.invoice
        recorded = await uow.payment_attempts.get(attempt.id)
    if payment is not None and payment.duplicate is not None:
        await refund_duplicate(
            collector.database, collector.gateway, payment.duplicate, now=collector.now, actor=collector.actor
        )
    assert recorded is not None
    return invoice, recorded


async def _mark_past_due(collector: Collector, partner_id: str, invoice_id: str) -> Invoice:
    async with collector.writer() as uow:
        await uow.partners.lock(partner_id)
        invoice = await owned_invoice(uow, partner_id, invoice_id, for_update=True)
        return await mark_past_due(uow, invoice, at=collector.now, request_id=collector.request_id)
