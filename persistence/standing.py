"""Account standing, stored on the partner's row."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.standing import Standing
from persistence.partners import partners, standing_of_row


class StandingRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def get(self, partner_id: str) -> Standing | None:
        row = (
            await self._connection.execute(
                select(
                    partners.c.standing, partners.c.standing_since, partners.c.standing_reason_invoice_id
                ).where(partners.c.id == partner_id)
            )
        ).one_or_none()
        if row is None:
            return None
        return standing_of_row(row)

    async def save(self, partner_id: str, standing: Standing) -> None:
        await self._connection.execute(
            update(partners)
            .where(partners.c.id == partner_id)
            .values(
                standing=standing.state.value,
                standing_since=standing.since,
                standing_reason_invoice_id=standing.reason_invoice_id,
            )
        )
