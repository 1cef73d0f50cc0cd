"""Support contact details, from settings."""

from __future__ import annotations

from domain.support import SupportContact
from resolvers.context import RequestContext


def support(ctx: RequestContext) -> SupportContact:
    return ctx.support
