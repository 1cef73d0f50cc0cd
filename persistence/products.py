"""The product catalog and its dated prices per currency."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    PrimaryKeyConstraint,
    String,
    Table,
    bindparam,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.products import Product, ProductPrice
from persistence.metadata import metadata
from persistence.sqlite_connections import PreparedRead
from persistence.types import UTCDateTime

products = Table(
    "products",
    metadata,
    Column("slug", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", String(1000), nullable=False, server_default=""),
    # Set when staff retire the product: no new issues, held licenses keep billing.
    Column("retired_at", UTCDateTime(), nullable=True),
)

product_prices = Table(
    "product_prices",
    metadata,
    Column("product_slug", String(64), ForeignKey("products.slug"), nullable=False),
    Column("currency", String(3), nullable=False),
    # A local date: the price applies to license-days from this calendar day on, in the partner's zone.
    Column("effective_from", Date, nullable=False),
    # Millionths of the currency's major unit per license per day (USD 0.328767/day = 328767).
    Column("daily_price_micros", BigInteger, nullable=False),
    PrimaryKeyConstraint("product_slug", "currency", "effective_from", name="pk_product_prices"),
    CheckConstraint("daily_price_micros > 0", name="positive"),
)


class ProductRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def list_all(self) -> list[Product]:
        return await self._with_prices()

    async def get_many(self, slugs: Iterable[str]) -> dict[str, Product]:
        wanted = set(slugs)
        if not wanted:
            return {}
        return {product.slug: product for product in await self._with_prices(wanted)}

    async def get(self, slug: str) -> Product | None:
        return (await self.get_many([slug])).get(slug)

    async def add(self, product: Product) -> None:
        await self._connection.execute(
            products.insert().values(slug=product.slug, name=product.name, description=product.description)
        )

    async def describe(self, product: Product) -> None:
        """Update the name and description of an existing product."""
        await self._connection.execute(
            update(products)
            .where(products.c.slug == product.slug)
            .values(name=product.name, description=product.description)
        )

    async def retire(self, slug: str, at: datetime) -> None:
        await self._connection.execute(
            update(products)
            .where(products.c.slug == slug, products.c.retired_at.is_(None))
            .values(retired_at=at)
        )

    async def set_price(self, price: ProductPrice) -> None:
        """Insert the price row, or replace the price of the same (product, currency, effective date)."""
        key = (
            product_prices.c.product_slug == price.product_slug,
            product_prices.c.currency == price.currency,
            product_prices.c.effective_from == price.effective_from,
        )
        result = await self._connection.execute(
            update(product_prices).where(*key).values(daily_price_micros=price.daily_price_micros)
        )
        if not result.rowcount:
            await self._connection.execute(
                product_prices.insert().values(
                    product_slug=price.product_slug,
                    currency=price.currency,
                    effective_from=price.effective_from,
                    daily_price_micros=price.daily_price_micros,
                )
            )

    async def _with_prices(self, slugs: Iterable[str] | None = None) -> list[Product]:
        """Products by name (those of `slugs`, or all), each with its prices, in one statement (a page
        of licenses loads its products at once)."""
        if slugs is None:
            result: Iterable[Sequence[Any]] = await self._connection.execute(_CATALOG)
        else:
            wanted = sorted(slugs)
            result = await _catalog_of(len(wanted)).rows(
                self._connection, {f"slug_{i}": slug for i, slug in enumerate(wanted)}
            )
        found: dict[str, tuple[tuple[str, str, str, Any], list[ProductPrice]]] = {}
        # Unpacked by position: reading a Row by name costs several times more, on every page.
        for slug, name, description, retired_at, currency, effective_from, micros in result:
            _, prices = found.setdefault(slug, ((slug, name, description, retired_at), []))
            if currency is not None:
                prices.append(ProductPrice(slug, currency, effective_from, micros))
        return [
            Product(
                slug=slug, name=name, description=description, prices=tuple(prices), retired_at=retired_at
            )
            for (slug, name, description, retired_at), prices in found.values()
        ]


# Built once: building a statement (and its cache key) costs more than SQLite running this one.
_CATALOG = (
    select(
        products.c.slug,
        products.c.name,
        products.c.description,
        products.c.retired_at,
        product_prices.c.currency,
        product_prices.c.effective_from,
        product_prices.c.daily_price_micros,
    )
    .select_from(products.outerjoin(product_prices, product_prices.c.product_slug == products.c.slug))
    .order_by(products.c.name, products.c.slug, product_prices.c.currency, product_prices.c.effective_from)
)


@lru_cache(maxsize=64)
def _catalog_of(count: int) -> PreparedRead:
    """The catalog's rows of `count` products (parameters `slug_0`, `slug_1`, ...), built once per
    count: SQLAlchemy renders an expanding IN anew on every call, and a page of licenses reads its
    products on every request."""
    return PreparedRead(_CATALOG.where(products.c.slug.in_([bindparam(f"slug_{i}") for i in range(count)])))
