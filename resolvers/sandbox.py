"""Sandbox mode: staff move the clock forward to play out a billing month in minutes."""

from __future__ import annotations

from datetime import datetime

from resolvers.context import RequestContext


async def advance_sandbox_clock(ctx: RequestContext, *, to: datetime) -> datetime:
    ctx.require_staff()
    clock = ctx.sandbox_clock()
    clock.advance_to(to)
    return clock.now()
