"""The catalog partners issue licenses from."""

from __future__ import annotations

from domain.products import Product
from resolvers.context import RequestContext


async def list_products(ctx: RequestContext) -> list[Product]:
    ctx.caller()
    async with ctx.reader() as uow:
        return await uow.products.list_all()


async def products_by_slug(ctx: RequestContext, slugs: list[str]) -> list[Product | None]:
    """Catalog entries for many slugs in one statement, in the order asked (for batching loaders)."""
    async with ctx.reader() as uow:
        found = await uow.products.get_many(slugs)
    return [found.get(slug) for slug in slugs]
