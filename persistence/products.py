"""The product catalog."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import BigInteger, Column, Row, String, Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.products import Product
from persistence.metadata import metadata

products = Table(
    "products",
    metadata,
    Column("slug", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", String(1000), nullable=False, server_default=""),
    # Millionths of the currency's major unit per license per day (USD 0.328767/day = 328767).
    Column("daily_price_micros", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
)


class ProductRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def list_all(self) -> list[Product]:
        rows = await self._connection.execute(select(products).order_by(products.c.name))
        return [_to_product(row) for row in rows]

    async def get_many(self, slugs: Iterable[str]) -> dict[str, Product]:
        wanted = set(slugs)
        if not wanted:
            return {}
        rows = await self._connection.execute(select(products).where(products.c.slug.in_(wanted)))
        return {row.slug: _to_product(row) for row in rows}

    async def get(self, slug: str) -> Product | None:
        return (await self.get_many([slug])).get(slug)

    async def save(self, product: Product) -> None:
        """Insert or update one catalog entry (used by the demo seed and staff tooling)."""
        values = {
            "name": product.name,
            "description": product.description,
            "daily_price_micros": product.daily_price_micros,
            "currency": product.currency,
        }
        result = await self._connection.execute(
            products.update().where(products.c.slug == product.slug).values(**values)
        )
        if not result.rowcount:
            await self._connection.execute(products.insert().values(slug=product.slug, **values))


def _to_product(row: Row[Any]) -> Product:
    return Product(
        slug=row.slug,
        name=row.name,
        description=row.description,
        daily_price_micros=row.daily_price_micros,
        currency=row.currency,
    )
