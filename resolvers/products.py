"""The catalog: partners read it; staff create products, set their dated prices and retire them.

The same steps serve the API, the CLI (`licensing product ...`, `licensing catalog import`) and the demo,
which imports the catalog file shipped in the package.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from domain.access import Permission
from domain.errors import DomainError, ErrorCode
from domain.products import CatalogEntry, Product, ProductPrice, new_price, new_product, validate_slug
from persistence.unit_of_work import UnitOfWork
from resolvers.context import RequestContext
from resolvers.idempotency import idempotent_call, replay_race, staff_scope, store_outcome, stored_outcome


async def list_products(ctx: RequestContext) -> list[Product]:
    ctx.require(Permission.RECORDS_READ)
    async with ctx.reader() as uow:
        return await uow.products.list_all()


async def products_by_slug(ctx: RequestContext, slugs: list[str]) -> list[Product | None]:
    """Catalog entries for many slugs in one statement, in the order asked (for batching loaders)."""
    async with ctx.reader() as uow:
        found = await uow.products.get_many(slugs)
    return [found.get(slug) for slug in slugs]


@dataclass(frozen=True)
class CatalogView:
    """Whose prices a product shows: the caller's billing currency and local day (staff: USD, UTC)."""

    currency: str
    today: date


async def catalog_views(ctx: RequestContext, keys: list[str]) -> list[CatalogView]:
    """The caller's CatalogView, once per request (for a batching loader keyed by anything)."""
    caller = ctx.caller()
    currency, zone = "usd", "UTC"
    if caller.partner_id is not None:
        async with ctx.reader() as uow:
            partner = await uow.partners.get(caller.partner_id)
        if partner is not None:
            currency, zone = partner.currency, partner.billing_zone
    view = CatalogView(currency, ctx.clock.now().astimezone(ZoneInfo(zone)).date())
    return [view for _ in keys]


async def require_sellable(
    uow: UnitOfWork,
    partner_id: str,
    slugs: Sequence[str],
    now: datetime,
    fields: Sequence[str],
    *,
    issuing: bool = True,
) -> None:
    """Each product exists (UNKNOWN_PRODUCT), is not retired when `issuing` (PRODUCT_RETIRED) and has a
    price today, in the partner's zone and currency (PRICE_NOT_AVAILABLE); `fields` name each slug."""
    partner = await uow.partners.get(partner_id)
    if partner is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such partner.")
    catalog = await uow.products.get_many(slugs)
    book = await uow.billing.price_book(partner.currency)
    today = now.astimezone(ZoneInfo(partner.billing_zone)).date()
    for slug, field in zip(slugs, fields, strict=True):
        product = catalog.get(slug)
        if product is None:
            raise DomainError(
                ErrorCode.UNKNOWN_PRODUCT, f"There is no product '{slug}' in the catalog.", field
            )
        if issuing:
            product.require_issuable(field)
        book.require_price_on(slug, today, field)


# -- staff: catalog administration ----------------------------------------------------------------------


async def create_product(
    ctx: RequestContext, *, slug: str, name: str, description: str, idempotency_key: str | None = None
) -> Product:
    """Staff: add a product (unpriced: it can be issued once it has a price in the partner's currency)."""

    async def create(uow: UnitOfWork, now: datetime) -> str:
        return (await add_product(uow, new_product(slug, name, description))).slug

    arguments = {"slug": slug, "name": name, "description": description}
    return await _catalog_change(ctx, "createProduct", arguments, idempotency_key, create)


async def set_product_price(
    ctx: RequestContext,
    *,
    product_slug: str,
    currency: str,
    daily_price_micros: int,
    effective_from: date,
    idempotency_key: str | None = None,
) -> Product:
    """Staff: the product's daily price in a currency from a local date on (MONTH_CLOSED if that date is
    in a month already invoiced: what was billed stays billed)."""

    async def price(uow: UnitOfWork, now: datetime) -> str:
        await price_product(uow, new_price(product_slug, currency, daily_price_micros, effective_from))
        return product_slug

    arguments = {
        "productSlug": product_slug,
        "currency": currency,
        "dailyPriceMicros": daily_price_micros,
        "effectiveFrom": effective_from.isoformat(),
    }
    return await _catalog_change(ctx, "setProductPrice", arguments, idempotency_key, price)


async def retire_product(ctx: RequestContext, *, slug: str, idempotency_key: str | None = None) -> Product:
    """Staff: stop issuing a product. Licenses already held keep working, and billing, at its prices."""

    async def retire(uow: UnitOfWork, now: datetime) -> str:
        return (await retire_in_catalog(uow, slug, now)).slug

    return await _catalog_change(ctx, "retireProduct", {"slug": slug}, idempotency_key, retire)


async def retire_in_catalog(uow: UnitOfWork, slug: str, now: datetime) -> Product:
    """Retire the product (a retired one stays retired since its first retirement)."""
    await catalog_product(uow, slug, "slug")
    await uow.products.retire(slug, now)
    return await catalog_product(uow, slug, "slug")


async def _catalog_change(
    ctx: RequestContext,
    operation: str,
    arguments: dict[str, Any],
    idempotency_key: str | None,
    change: Callable[[UnitOfWork, datetime], Awaitable[str]],
) -> Product:
    """Run one staff catalog change in its own transaction, answering the product it changed; a replay
    with the same idempotency key answers the product as it is now."""
    staff = ctx.require_staff(Permission.CATALOG_MANAGE)
    call = idempotent_call(staff_scope(staff), idempotency_key, operation, arguments)
    async with replay_race(), ctx.unit_of_work() as uow:
        outcome = await stored_outcome(uow, call)
        if outcome is None:
            now = ctx.clock.now()
            slug = await change(uow, now)
            await store_outcome(uow, call, {"slug": slug}, now)
        else:
            slug = outcome["slug"]
        return await catalog_product(uow, slug, "slug")


async def catalog_product(uow: UnitOfWork, slug: str, field: str) -> Product:
    """The product, or UNKNOWN_PRODUCT."""
    product = await uow.products.get(slug)
    if product is None:
        raise DomainError(ErrorCode.UNKNOWN_PRODUCT, f"There is no product '{slug}' in the catalog.", field)
    return product


async def add_product(uow: UnitOfWork, product: Product) -> Product:
    if await uow.products.get(product.slug) is not None:
        raise DomainError(ErrorCode.CONFLICT, f"There already is a product '{product.slug}'.", "slug")
    await uow.products.add(product)
    return product


async def price_product(uow: UnitOfWork, price: ProductPrice) -> bool:
    """Set a dated price; False if that exact price was already set (re-importing a catalog is a no-op)."""
    product = await catalog_product(uow, validate_slug(price.product_slug), "productSlug")
    if price in product.prices:
        return False
    closed = await uow.invoices.latest_month()
    effective_month = (price.effective_from.year, price.effective_from.month)
    if closed is not None and effective_month <= (closed.year, closed.month):
        raise DomainError(
            ErrorCode.MONTH_CLOSED,
            f"{price.effective_from.isoformat()} is in a month already invoiced (up to {closed}); "
            "a price can change from the first day of an open month on.",
            "effectiveFrom",
        )
    await uow.products.set_price(price)
    return True


@dataclass(frozen=True)
class ImportReport:
    created: int
    updated: int
    prices_set: int


async def import_catalog(uow: UnitOfWork, entries: Sequence[CatalogEntry]) -> ImportReport:
    """Create or describe each product and set its prices, all in the caller's transaction (all or none).

    Re-importing the same file changes nothing, so the demo imports it on every run."""
    created = updated = prices_set = 0
    for entry in entries:
        existing = await uow.products.get(entry.product.slug)
        if existing is None:
            await uow.products.add(entry.product)
            created += 1
        elif (existing.name, existing.description) != (entry.product.name, entry.product.description):
            await uow.products.describe(entry.product)
            updated += 1
        for price in entry.prices:
            prices_set += await price_product(uow, price)
    return ImportReport(created, updated, prices_set)
