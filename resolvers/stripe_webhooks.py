"""Applying Stripe's webhooks: once per event id, through the same transitions as charging.

A success is applied only when its amount, currency and customer are the invoice's; otherwise it is
recorded as rejected. The success of the PaymentIntent that paid the invoice is a no-op; the success of
another one on a paid invoice is refunded through Stripe and recorded (`duplicate_refunded`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy.exc import IntegrityError

from domain.actors import STRIPE_WEBHOOK, Actor
from domain.invoices import Invoice
from domain.payments import AttemptStatus, PaymentAttempt
from payments.gateway import ChargeOutcome, PaymentGateway, WebhookEvent
from persistence.database import Database
from persistence.unit_of_work import UnitOfWork
from resolvers.invoice_transitions import (
    DuplicatePayment,
    mark_past_due,
    record_attempt_answer,
    record_payment,
    refund_duplicate,
)
from resolvers.payments import CardRemoval, forget_card, mirror_default

log = logging.getLogger("licensing.webhooks")


class WebhookOutcome(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"  # an event we do not act on, or about nothing we know
    REJECTED = "rejected"  # a success that does not match its invoice: recorded, not applied
    REFUNDED = "refunded"  # a second payment of a paid invoice, refunded
    REFUND_FAILED = "refund_failed"  # a second payment Stripe would not refund: staff refund it by hand


# Whatever a webhook changes is recorded as done by this system job.
WEBHOOK_ACTOR = Actor.system(STRIPE_WEBHOOK)

HANDLED_EVENTS = frozenset(
    {"payment_intent.succeeded", "payment_intent.payment_failed", "payment_method.detached"}
)


@dataclass(frozen=True)
class _Verdict:
    outcome: WebhookOutcome
    detail: str | None = None
    duplicate: DuplicatePayment | None = None
    removal: CardRemoval | None = None


async def apply_webhook(
    database: Database, gateway: PaymentGateway, event: WebhookEvent, *, now: datetime
) -> WebhookOutcome:
    """Apply a verified Stripe event once (deduplicated by its id) through the same state machines."""
    try:
        async with UnitOfWork(database, actor=WEBHOOK_ACTOR) as uow:
            partner_id = await _partner_of(uow, event)
            if partner_id is not None:
                await uow.partners.lock(partner_id)
            if await uow.webhook_events.seen(event.id):
                return WebhookOutcome.DUPLICATE
            verdict = await _verdict(uow, event, partner_id, now)
            if verdict.duplicate is None:  # a refund is recorded once Stripe has answered
                await uow.webhook_events.add(event.id, event.type, now, verdict.outcome.value, verdict.detail)
            customer = None if partner_id is None else await uow.customers.get(partner_id)
    except IntegrityError:
        # A concurrent delivery of the same event committed first.
        return WebhookOutcome.DUPLICATE
    if verdict.duplicate is not None:
        refunded = await refund_duplicate(
            database, gateway, verdict.duplicate, now=now, actor=WEBHOOK_ACTOR, webhook=event
        )
        return WebhookOutcome.REFUNDED if refunded else WebhookOutcome.REFUND_FAILED
    removal = verdict.removal
    if removal is not None and removal.primary_changed and customer is not None:
        await mirror_default(gateway, customer, removal.new_primary)
    return verdict.outcome


async def _verdict(uow: UnitOfWork, event: WebhookEvent, partner_id: str | None, now: datetime) -> _Verdict:
    if partner_id is None or event.type not in HANDLED_EVENTS:
        return _Verdict(WebhookOutcome.IGNORED)
    if event.type == "payment_method.detached":
        method = await uow.payment_methods.by_stripe_id(event.object_id or "")
        if method is None or not method.is_active:
            return _Verdict(WebhookOutcome.APPLIED)
        return _Verdict(WebhookOutcome.APPLIED, removal=await forget_card(uow, method, now))
    return await _payment_intent_event(uow, event, partner_id, now)


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
            return await uow.dunning.invoice_partner(event.invoice_id)
    return None


async def _payment_intent_event(
    uow: UnitOfWork, event: WebhookEvent, partner_id: str, now: datetime
) -> _Verdict:
    intent_id = event.object_id
    attempt = await uow.payment_attempts.by_payment_intent(intent_id) if intent_id else None
    invoice_id = attempt.invoice_id if attempt is not None else event.invoice_id
    invoice = None if invoice_id is None else await uow.invoices.get(partner_id, invoice_id, for_update=True)
    if invoice is None:
        return _Verdict(WebhookOutcome.IGNORED)
    succeeded = event.type == "payment_intent.succeeded"
    if succeeded:
        mismatch = await _mismatch(uow, event, invoice)
        if mismatch is not None:
            log.warning("webhook %s rejected for invoice %s: %s", event.id, invoice.id, mismatch)
            return _Verdict(WebhookOutcome.REJECTED, mismatch)
    if attempt is None:
        attempt = await _attempt_whose_intent_was_lost(uow, invoice.id)
    if attempt is not None and attempt.is_unresolved:
        await record_attempt_answer(uow, invoice, attempt, _answer(event, intent_id, succeeded), at=now)
        if not succeeded and attempt.status is AttemptStatus.UNKNOWN:
            # Only an attempt whose answer was lost: a pending one's collector is still trying other cards.
            await mark_past_due(uow, invoice, at=now, request_id=None)
    if not succeeded:
        return _Verdict(WebhookOutcome.APPLIED)
    payment = await record_payment(
        uow, invoice, at=now, request_id=None, attempt=attempt, payment_intent_id=intent_id
    )
    return _Verdict(WebhookOutcome.APPLIED, duplicate=payment.duplicate)


async def _attempt_whose_intent_was_lost(uow: UnitOfWork, invoice_id: str) -> PaymentAttempt | None:
    """Our answer to creating the PaymentIntent was lost: the unresolved attempt without an intent id is
    the one Stripe is telling about (one with an id would have been found by it)."""
    unresolved = [
        a
        for a in await uow.payment_attempts.for_invoice(invoice_id)
        if a.is_unresolved and a.payment_intent_id is None
    ]
    return unresolved[-1] if unresolved else None


async def _mismatch(uow: UnitOfWork, event: WebhookEvent, invoice: Invoice) -> str | None:
    """Why a success cannot be this invoice's payment, or None when amount, currency and customer match."""
    customer = await uow.customers.get(invoice.partner_id)
    expected = (invoice.total, invoice.currency.lower(), customer)
    received = (event.amount, event.currency, event.customer_id)
    for name, want, got in zip(("amount", "currency", "customer"), expected, received, strict=True):
        if want != got:
            return f"{name} {got!r} does not match the invoice's {want!r}"
    return None


def _answer(event: WebhookEvent, intent_id: str | None, succeeded: bool) -> ChargeOutcome:
    if succeeded:
        return ChargeOutcome("succeeded", intent_id)
    problem = event.object.get("last_payment_error") or {}
    return ChargeOutcome(
        "failed",
        intent_id,
        failure_code=problem.get("code") or "card_declined",
        failure_message=problem.get("message"),
        decline_code=problem.get("decline_code"),
    )
