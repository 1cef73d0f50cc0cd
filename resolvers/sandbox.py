"""Sandbox mode: staff move the clock forward to play out a billing month in minutes."""

from __future__ import annotations

from datetime import datetime

from domain.access import Permission
from resolvers.context import RequestContext
from resolvers.idempotency import idempotent_call, replay_race, staff_scope, store_outcome, stored_outcome


async def advance_sandbox_clock(
    ctx: RequestContext, *, to: datetime, idempotency_key: str | None = None
) -> datetime:
    """Staff: move the clock forward (a replay answers the instant the first call reached)."""
    staff = ctx.require_staff(Permission.SANDBOX_CLOCK)
    call = idempotent_call(
        staff_scope(staff),
        idempotency_key,
        "advanceSandboxClock",
        {"to": to},
    )
    clock = ctx.sandbox_clock()
    async with replay_race(), ctx.unit_of_work() as uow:
        outcome = await stored_outcome(uow, call)
        if outcome is not None:
            return datetime.fromisoformat(outcome["now"])
        clock.advance_to(to)
        await store_outcome(uow, call, {"now": clock.now().isoformat()}, clock.now())
    return clock.now()
