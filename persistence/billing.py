"""What billing reads: a partner's license holdings that touch a month, and the prices to apply."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.billing import Holding
from persistence.licenses import licenses
from persistence.products import products

TRANSFERRED = "transferred"


class BillingReader:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def holdings(self, partner_id: str, start: datetime, end: datetime) -> list[Holding]:
        """Holdings held at some instant of [start, end): one row each, in one statement.

        Plain Core rows, converted straight into `Holding`s: no ORM object per license or per day.
        """
        table = licenses.c
        result = await self._connection.execute(
            select(
                table.id,
                table.key,
                table.product_slug,
                table.site,
                table.held_from,
                table.held_until,
                table.state,
            ).where(
                table.partner_id == partner_id,
                table.held_from < end,
                or_(table.held_until.is_(None), table.held_until >= start),
            )
        )
        return [
            Holding(
                id=row[0],
                key=row[1],
                product_slug=row[2],
                site=row[3],
                held_from=_instant(row[4]),
                held_until=None if row[5] is None else _instant(row[5]),
                ended_by_transfer=row[6] == TRANSFERRED,
            )
            for row in result
        ]

    async def daily_prices(self) -> dict[str, int]:
        rows = await self._connection.execute(select(products.c.slug, products.c.daily_price_micros))
        return {slug: price for slug, price in rows}


def _instant(value: str | datetime) -> datetime:
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value.astimezone(UTC)
