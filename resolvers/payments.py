"""Payment method use cases: collect a card through a SetupIntent, add, list, make primary, remove.

No transaction is held open across a call to the provider: each use case reads (and checks) under the
partner's lock, calls Stripe, then writes under the lock again, re-checking what may have changed.
The API names cards by their Stripe PaymentMethod id (what Stripe.js hands the browser).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime

from domain.access import Permission
from domain.actors import Actor
from domain.errors import DomainError, ErrorCode
from domain.payments import CardChange, PaymentMethod, card_event, next_primary, validate_payment_method_id
from domain.standing import StandingEvent
from payments.gateway import GatewayRefused, PaymentGateway, SetupIntentRef
from persistence.database import Database
from persistence.pagination import Page
from persistence.unit_of_work import UnitOfWork
from resolvers.context import RequestContext
from resolvers.idempotency import idempotent_call, lock_and_replay, store_outcome
from resolvers.standing import apply_standing_event

log = logging.getLogger("licensing.payments")


def not_on_file(payment_method_id: str) -> DomainError:
    """Unknown, removed, and another partner's cards all answer the same."""
    return DomainError(
        ErrorCode.PAYMENT_METHOD_NOT_FOUND,
        f"No payment method {payment_method_id!r} is on file.",
        field="paymentMethodId",
    )


async def list_payment_methods(
    ctx: RequestContext, *, first: int | None = None, after: str | None = None
) -> Page[PaymentMethod]:
    partner_id = ctx.partner_id()
    async with ctx.reader() as uow:
        return await uow.payment_methods.page(partner_id, first=first, after=after)


async def create_payment_method_setup(
    ctx: RequestContext, *, idempotency_key: str | None = None
) -> SetupIntentRef:
    """A SetupIntent for the browser to collect a card with; the Stripe customer is created on first need."""
    partner_id = ctx.partner_id(Permission.PAYMENTS_WRITE)
    call = idempotent_call(partner_id, idempotency_key, "createPaymentMethodSetup", {})
    async with ctx.unit_of_work() as uow:
        outcome = await lock_and_replay(uow, partner_id, call)
    if outcome is not None:
        return SetupIntentRef(outcome["id"], outcome["client_secret"])
    gateway = ctx.payments()
    customer = await ensure_customer(ctx.database, gateway, partner_id, ctx.clock.now())
    setup = await gateway.create_setup_intent(customer)
    async with ctx.unit_of_work() as uow:
        outcome = await lock_and_replay(uow, partner_id, call)
        if outcome is not None:  # a concurrent call with the same key finished first
            return SetupIntentRef(outcome["id"], outcome["client_secret"])
        await store_outcome(
            uow, call, {"id": setup.id, "client_secret": setup.client_secret}, ctx.clock.now()
        )
    return setup


async def ensure_customer(database: Database, gateway: PaymentGateway, partner_id: str, now: datetime) -> str:
    """The partner's Stripe customer id, creating the customer the first time a card is needed."""
    async with UnitOfWork(database, read_only=True) as uow:
        customer = await uow.customers.get(partner_id)
        partner = await uow.partners.get(partner_id)
    if customer is not None:
        return customer
    if partner is None:
        raise DomainError(ErrorCode.NOT_FOUND, "The partner of this token no longer exists.")
    created = await gateway.create_customer(partner_id, partner.name)
    async with UnitOfWork(database) as uow:
        await uow.partners.lock(partner_id)
        existing = await uow.customers.get(partner_id)
        if existing is not None:
            return existing  # another request linked one meanwhile (Stripe's key made it the same)
        await uow.customers.add(partner_id, created, now)
    return created


async def add_payment_method(
    ctx: RequestContext,
    *,
    payment_method_id: str,
    make_primary: bool = False,
    idempotency_key: str | None = None,
) -> PaymentMethod:
    """Attach a card the browser collected, verify it with Stripe and mirror it; the first is primary."""
    partner_id = ctx.partner_id(Permission.PAYMENTS_WRITE)
    validate_payment_method_id(payment_method_id)
    call = idempotent_call(
        partner_id,
        idempotency_key,
        "addPaymentMethod",
        {"paymentMethodId": payment_method_id, "makePrimary": make_primary},
    )
    async with ctx.unit_of_work() as uow:
        outcome = await lock_and_replay(uow, partner_id, call)
        if outcome is not None:
            return await _stored_method(uow, outcome)
        known = await uow.payment_methods.by_stripe_id(payment_method_id)
        becomes_primary = make_primary or not await uow.payment_methods.active(partner_id)
    if known is not None and (known.partner_id != partner_id or not known.is_active):
        # Stripe never re-attaches a detached PaymentMethod; the browser makes a new one for the card.
        raise DomainError(
            ErrorCode.PAYMENT_METHOD_NOT_USABLE,
            f"Payment method {payment_method_id!r} was removed or is on file elsewhere; add the card anew.",
            field="paymentMethodId",
        )
    gateway = ctx.payments()
    customer = await ensure_customer(ctx.database, gateway, partner_id, ctx.clock.now())
    card = await gateway.attach_payment_method(customer, payment_method_id)
    if becomes_primary:
        await gateway.set_default_payment_method(customer, card.id)
    async with ctx.unit_of_work() as uow:
        outcome = await lock_and_replay(uow, partner_id, call)
        if outcome is not None:
            return await _stored_method(uow, outcome)
        now = ctx.clock.now()
        on_file = await uow.payment_methods.active(partner_id)
        method = next((m for m in on_file if m.stripe_id == card.id), None)
        if method is None:
            method = PaymentMethod(
                id="card_" + secrets.token_hex(8),
                partner_id=partner_id,
                stripe_id=card.id,
                brand=card.brand,
                last4=card.last4,
                exp_month=card.exp_month,
                exp_year=card.exp_year,
                is_primary=False,
                position=await uow.payment_methods.next_position(partner_id),
                created_at=now,
            )
            await uow.payment_methods.add(method)
            uow.collect(card_event(method, CardChange.ADDED, now), request_id=ctx.request_id)
            if not on_file:
                await apply_standing_event(
                    uow,
                    partner_id=partner_id,
                    event=StandingEvent.PAYMENT_METHOD_ADDED,
                    at=now,
                    request_id=ctx.request_id,
                )
        if make_primary or not on_file:
            await _make_primary(uow, method, now, ctx.request_id)
        await store_outcome(uow, call, {"payment_method_id": method.id}, now)
        return await _current(uow, method.id)


async def set_primary_payment_method(
    ctx: RequestContext, *, payment_method_id: str, idempotency_key: str | None = None
) -> PaymentMethod:
    """Charge this card first from now on; it also becomes the Stripe customer's invoice default."""
    partner_id = ctx.partner_id(Permission.PAYMENTS_WRITE)
    validate_payment_method_id(payment_method_id)
    call = idempotent_call(
        partner_id, idempotency_key, "setPrimaryPaymentMethod", {"paymentMethodId": payment_method_id}
    )
    async with ctx.unit_of_work() as uow:
        outcome = await lock_and_replay(uow, partner_id, call)
        if outcome is not None:
            return await _stored_method(uow, outcome)
        method = await _owned(uow, partner_id, payment_method_id)
        customer = await uow.customers.get(partner_id)
    if customer is None:
        raise not_on_file(payment_method_id)
    await ctx.payments().set_default_payment_method(customer, method.stripe_id)
    async with ctx.unit_of_work() as uow:
        outcome = await lock_and_replay(uow, partner_id, call)
        if outcome is not None:
            return await _stored_method(uow, outcome)
        method = await _owned(uow, partner_id, payment_method_id)
        now = ctx.clock.now()
        await _make_primary(uow, method, now, ctx.request_id)
        await store_outcome(uow, call, {"payment_method_id": method.id}, now)
        return await _current(uow, method.id)


async def remove_payment_method(
    ctx: RequestContext, *, payment_method_id: str, idempotency_key: str | None = None
) -> PaymentMethod:
    """Detach a card. The next card is promoted when the primary goes; with no card left, issuing pauses."""
    partner_id = ctx.partner_id(Permission.PAYMENTS_WRITE)
    validate_payment_method_id(payment_method_id)
    call = idempotent_call(
        partner_id, idempotency_key, "removePaymentMethod", {"paymentMethodId": payment_method_id}
    )
    async with ctx.unit_of_work() as uow:
        outcome = await lock_and_replay(uow, partner_id, call)
        if outcome is not None:
            return await _stored_method(uow, outcome)
        method = await _owned(uow, partner_id, payment_method_id)
        customer = await uow.customers.get(partner_id)
    gateway = ctx.payments()
    if customer is not None:
        try:
            await gateway.detach_payment_method(customer, method.stripe_id)
        except DomainError as error:
            if error.code is not ErrorCode.PAYMENT_METHOD_NOT_FOUND:
                raise
            # Already detached at Stripe (its dashboard, or a webhook on its way): mirror that.
    async with ctx.unit_of_work() as uow:
        outcome = await lock_and_replay(uow, partner_id, call)
        if outcome is not None:
            return await _stored_method(uow, outcome)
        now = ctx.clock.now()
        current = await uow.payment_methods.get(method.id)
        change = None
        if current is not None and current.is_active:
            change = await forget_card(uow, current, now, request_id=ctx.request_id)
        await store_outcome(uow, call, {"payment_method_id": method.id}, now)
        removed = await _current(uow, method.id)
    if change is not None and change.primary_changed and customer is not None:
        await mirror_default(gateway, customer, change.new_primary)
    return removed


async def forget_customer(database: Database, partner_id: str, now: datetime, actor: Actor) -> None:
    """Drop our mirror of a Stripe customer Stripe no longer knows (a restarted localstripe in the demo):
    its cards are removed, so standing pauses issuing until a card is added again."""
    async with UnitOfWork(database, actor=actor) as uow:
        await uow.partners.lock(partner_id)
        for method in await uow.payment_methods.active(partner_id):
            current = await uow.payment_methods.get(method.id)
            if current is not None and current.is_active:
                await forget_card(uow, current, now)
        await uow.customers.forget(partner_id)


@dataclass(frozen=True)
class CardRemoval:
    primary_changed: bool
    new_primary: PaymentMethod | None


async def forget_card(
    uow: UnitOfWork,
    method: PaymentMethod,
    at: datetime,
    *,
    request_id: str | None = None,
) -> CardRemoval:
    """Mark a card removed, promote the next one if it was primary, and pause issuing with none left.

    Call it under the partner's lock (removePaymentMethod and the payment_method.detached webhook).
    """
    on_file = await uow.payment_methods.active(method.partner_id)
    await uow.payment_methods.remove(method.id, at)
    uow.collect(card_event(method, CardChange.REMOVED, at), request_id=request_id)
    promoted = next_primary(on_file, method.id) if method.is_primary else None
    if promoted is not None:
        await _make_primary(uow, promoted, at, request_id)
    if not [m for m in on_file if m.id != method.id]:
        await apply_standing_event(
            uow,
            partner_id=method.partner_id,
            event=StandingEvent.LAST_PAYMENT_METHOD_REMOVED,
            at=at,
            request_id=request_id,
        )
    return CardRemoval(primary_changed=method.is_primary, new_primary=promoted)


async def _make_primary(uow: UnitOfWork, method: PaymentMethod, at: datetime, request_id: str | None) -> None:
    """`method` becomes the card charged first; a change of primary is an event, a no-op is not."""
    await uow.payment_methods.make_primary(method.partner_id, method.id)
    if not method.is_primary:
        uow.collect(card_event(method, CardChange.MADE_PRIMARY, at), request_id=request_id)


async def mirror_default(gateway: PaymentGateway, customer: str, method: PaymentMethod | None) -> None:
    """Best effort: Stripe's invoice default follows our primary; our record is what charging uses."""
    try:
        await gateway.set_default_payment_method(customer, None if method is None else method.stripe_id)
    except (DomainError, GatewayRefused) as error:
        log.warning("could not set the default card of %s at Stripe: %s", customer, error)


async def _owned(uow: UnitOfWork, partner_id: str, payment_method_id: str) -> PaymentMethod:
    method = await uow.payment_methods.by_stripe_id(payment_method_id)
    if method is None or method.partner_id != partner_id or not method.is_active:
        raise not_on_file(payment_method_id)
    return method


async def _current(uow: UnitOfWork, method_id: str) -> PaymentMethod:
    method = await uow.payment_methods.get(method_id)
    assert method is not None
    return method


async def _stored_method(uow: UnitOfWork, outcome: dict[str, str]) -> PaymentMethod:
    method = await uow.payment_methods.get(outcome["payment_method_id"])
    if method is None:
        raise DomainError(ErrorCode.NOT_FOUND, "The payment method of this idempotency key no longer exists.")
    return method
