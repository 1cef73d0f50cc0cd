"""Partner use cases: who am I, and (staff) enrol a new agency."""

from __future__ import annotations

import secrets
from datetime import datetime

from domain.access import Permission
from domain.errors import DomainError, ErrorCode
from domain.partners import Partner, validate_billing_zone, validate_currency, validate_partner_name
from domain.payments import PaymentMethod
from domain.standing import Standing, StandingState
from persistence.pagination import Page
from persistence.unit_of_work import UnitOfWork
from resolvers.context import RequestContext
from resolvers.idempotency import idempotent_call, replay_race, staff_scope, store_outcome, stored_outcome


async def viewer(ctx: RequestContext) -> tuple[Partner, Standing]:
    """The caller's partner and its standing, read together (one statement)."""
    partner_id = ctx.partner_id()
    async with ctx.reader() as uow:
        found = await uow.partners.get_with_standing(partner_id)
    if found is None:
        raise DomainError(ErrorCode.NOT_FOUND, "The partner of this token no longer exists.")
    return found


async def partner(ctx: RequestContext, *, partner_id: str) -> Partner:
    """A partner by id: staff read any; a partner token reads only its own."""
    readable = ctx.readable_partner(partner_id)
    async with ctx.reader() as uow:
        found = await uow.partners.get(readable)
    if found is None:
        raise DomainError(ErrorCode.NOT_FOUND, f"No partner '{partner_id}'.", field="id")
    return found


async def list_partners(
    ctx: RequestContext,
    *,
    search: str | None,
    standing: StandingState | None,
    first: int | None,
    after: str | None,
) -> Page[Partner]:
    """Staff: partners by name, optionally those whose name or id contains `search`, or in one standing."""
    ctx.require_staff(Permission.PARTNERS_LIST)
    async with ctx.reader() as uow:
        return await uow.partners.page(
            search=(search or "").strip() or None,
            standing=None if standing is None else standing.value,
            first=first,
            after=after,
        )


async def partner_cards(ctx: RequestContext, *, partner_id: str) -> list[PaymentMethod]:
    """The partner's cards on file, oldest first (the schema shows staff only brand and last 4)."""
    readable = ctx.readable_partner(partner_id)
    async with ctx.reader() as uow:
        return await uow.payment_methods.active(readable)


async def create_partner(
    ctx: RequestContext,
    *,
    name: str,
    billing_zone: str,
    currency: str,
    idempotency_key: str | None = None,
) -> Partner:
    """Staff: enrol a partner. It starts without a payment method, so it cannot issue yet."""
    call = idempotent_call(
        staff_scope(ctx.require_staff(Permission.PARTNERS_MANAGE)),
        idempotency_key,
        "createPartner",
        {"name": name, "billingZone": billing_zone, "currency": currency},
    )
    async with replay_race(), ctx.unit_of_work() as uow:
        outcome = await stored_outcome(uow, call)
        if outcome is not None:
            replayed = await uow.partners.get(outcome["partner_id"])
            if replayed is None:
                raise DomainError(ErrorCode.NOT_FOUND, "The partner this key created no longer exists.")
            return replayed
        partner = await enrol_partner(
            uow, name=name, billing_zone=billing_zone, currency=currency, now=ctx.clock.now()
        )
        await store_outcome(uow, call, {"partner_id": partner.id}, partner.created_at)
        return partner


async def set_partner_currency(
    ctx: RequestContext, *, partner_id: str, currency: str, idempotency_key: str | None = None
) -> Partner:
    """Staff: change the currency a partner is billed in, until it has held a license (CURRENCY_LOCKED
    after: its invoices, prices and payments are in that currency)."""
    call = idempotent_call(
        staff_scope(ctx.require_staff(Permission.PARTNERS_MANAGE)),
        idempotency_key,
        "setPartnerCurrency",
        {"partnerId": partner_id, "currency": currency},
    )
    code = validate_currency(currency)
    async with replay_race(), ctx.unit_of_work() as uow:
        await uow.partners.lock(partner_id)
        if await stored_outcome(uow, call) is None:
            partner = await uow.partners.get(partner_id)
            if partner is None:
                raise DomainError(ErrorCode.NOT_FOUND, f"No partner '{partner_id}'.", field="partnerId")
            if code != partner.currency and await uow.licenses.has_held_any(partner_id):
                raise DomainError(
                    ErrorCode.CURRENCY_LOCKED,
                    f"{partner.name} has held licenses billed in {partner.currency.upper()}; "
                    "its currency can no longer change.",
                    field="currency",
                )
            await uow.partners.set_currency(partner_id, code)
            await store_outcome(uow, call, {"partner_id": partner_id}, ctx.clock.now())
        changed = await uow.partners.get(partner_id)
        if changed is None:
            raise DomainError(ErrorCode.NOT_FOUND, f"No partner '{partner_id}'.", field="partnerId")
        return changed


async def enrol_partner(
    uow: UnitOfWork, *, name: str, billing_zone: str, currency: str, now: datetime
) -> Partner:
    """Validate and store a new partner inside an open unit of work (shared by the API and the CLI)."""
    partner = Partner(
        id=new_partner_id(),
        name=validate_partner_name(name),
        billing_zone=validate_billing_zone(billing_zone),
        currency=validate_currency(currency),
        created_at=now,
    )
    await uow.partners.add(partner)
    return partner


def new_partner_id() -> str:
    return "ptr_" + secrets.token_hex(8)
