"""The catalog partners issue licenses from."""

from __future__ import annotations

from domain.products import Product
from resolvers.context import RequestContext


async def list_products(ctx: RequestContext) -> list[Product]:
    ctx.caller()
    async with ctx.reader() as uow:
        return await uow.products.list_all()
