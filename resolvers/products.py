"""The catalog partners issue licenses from."""

from __future__ import annotations

from domain.products import Product
from resolvers.context import RequestContext


async def list_products(ctx: RequestContext) -> list[Product]:
    ctx.caller()
    async with ctx.reader() as uow:
        return await uow.products.list_all()


async def catalog(ctx: RequestContext) -> dict[str, Product]:
    """Every product by slug, loaded once per request (the catalog is small; lines refer to it often)."""
    cached = ctx.loaders.get("catalog")
    if cached is None:
        async with ctx.reader() as uow:
            cached = {product.slug: product for product in await uow.products.list_all()}
        ctx.loaders["catalog"] = cached
    return cached  # type: ignore[return-value]
