"""Account standing: read it, gate actions on it, and move it with domain events.

Payment methods and invoices (later features) call `apply_standing_event` inside their own unit of
work; until they exist, tests move a partner's standing through it directly.
"""

from __future__ import annotations

from datetime import datetime

from domain.errors import DomainError, ErrorCode
from domain.invoices import Invoice
from domain.standing import Action, Standing, StandingEvent, move_standing
from persistence.unit_of_work import UnitOfWork
from resolvers.context import RequestContext


async def standing_of(ctx: RequestContext, *, partner_id: str) -> Standing:
    """A partner's standing; a partner token sees only its own, staff sees any."""
    caller = ctx.caller()
    if not caller.is_staff and caller.partner_id != partner_id:
        raise DomainError(ErrorCode.NOT_FOUND, "No such partner.")
    async with ctx.reader() as uow:
        standing = await uow.standing.get(partner_id)
    if standing is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such partner.")
    return standing


async def reason_invoice(ctx: RequestContext, *, partner_id: str, invoice_id: str) -> Invoice | None:
    """The invoice a standing names as its reason, to whoever may read that standing."""
    caller = ctx.caller()
    if not caller.is_staff and caller.partner_id != partner_id:
        raise DomainError(ErrorCode.NOT_FOUND, "No such partner.")
    async with ctx.reader() as uow:
        return await uow.invoices.get(partner_id, invoice_id)


async def require_standing(uow: UnitOfWork, partner_id: str, action: Action) -> None:
    """Refuse `action` with NO_PAYMENT_METHOD or ACCOUNT_PAST_DUE when the standing blocks it."""
    standing = await uow.standing.get(partner_id)
    if standing is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such partner.")
    standing.require(action)


async def apply_standing_event(
    uow: UnitOfWork,
    *,
    partner_id: str,
    event: StandingEvent,
    at: datetime,
    invoice_id: str | None = None,
    has_payment_method: bool = False,
    request_id: str | None = None,
) -> Standing:
    """Move a partner's standing inside an open unit of work; record a "standing" event when its state
    or reason changed (a card added while past due changes neither, so it tells nobody)."""
    await uow.partners.lock(partner_id)
    current = await uow.standing.get(partner_id)
    if current is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such partner.")
    move = move_standing(
        partner_id,
        current,
        event,
        at=at,
        invoice_id=invoice_id,
        has_payment_method=has_payment_method,
        oldest_past_due=await uow.dunning.oldest_past_due(partner_id),
    )
    if move.event is not None:
        await uow.standing.save(partner_id, move.standing)
        uow.collect(move.event, request_id=request_id)
    return move.standing
