"""Dunning as stored: where each past-due invoice is in its retries and non-payment revocation, and
which invoices still need collecting."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, ForeignKey, Integer, Row, String, Table, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.invoices import InvoiceStatus
from persistence.invoices import invoices
from persistence.metadata import metadata
from persistence.types import UTCDateTime

invoice_dunning = Table(
    "invoice_dunning",
    metadata,
    Column("invoice_id", String(32), ForeignKey("invoices.id"), primary_key=True),
    Column("partner_id", String(32), ForeignKey("partners.id"), nullable=False),
    Column("past_due_since", UTCDateTime(), nullable=False),
    Column("retries_done", Integer, nullable=False),
    Column("licenses_revoked_at", UTCDateTime(), nullable=True),
)


@dataclass(frozen=True)
class Dunning:
    """Where a past-due invoice is in dunning."""

    invoice_id: str
    partner_id: str
    past_due_since: datetime
    retries_done: int
    licenses_revoked_at: datetime | None


class DunningRepository:
    """Which invoices still need collecting, and the dunning state of past-due ones."""

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def start_dunning(self, invoice_id: str, partner_id: str, since: datetime) -> None:
        if await self.dunning(invoice_id) is None:
            await self._connection.execute(
                invoice_dunning.insert().values(
                    invoice_id=invoice_id, partner_id=partner_id, past_due_since=since, retries_done=0
                )
            )

    async def dunning(self, invoice_id: str) -> Dunning | None:
        row = (
            await self._connection.execute(
                select(invoice_dunning).where(invoice_dunning.c.invoice_id == invoice_id)
            )
        ).one_or_none()
        return None if row is None else _to_dunning(row)

    async def past_due(self) -> list[Dunning]:
        """Every invoice in dunning that is still past due, oldest first."""
        rows = await self._connection.execute(
            select(invoice_dunning)
            .join(invoices, invoices.c.id == invoice_dunning.c.invoice_id)
            .where(invoices.c.status == InvoiceStatus.PAST_DUE.value)
            .order_by(invoice_dunning.c.past_due_since, invoice_dunning.c.invoice_id)
        )
        return [_to_dunning(row) for row in rows]

    async def set_retries(self, invoice_id: str, retries_done: int) -> None:
        await self._connection.execute(
            update(invoice_dunning)
            .where(invoice_dunning.c.invoice_id == invoice_id)
            .values(retries_done=retries_done)
        )

    async def mark_licenses_revoked(self, invoice_id: str, at: datetime) -> None:
        await self._connection.execute(
            update(invoice_dunning)
            .where(invoice_dunning.c.invoice_id == invoice_id)
            .values(licenses_revoked_at=at)
        )

    async def open_invoices(self, months: Sequence[str] | None = None) -> list[tuple[str, str]]:
        """(partner id, invoice id) of finalized invoices not collected yet, optionally of some months."""
        statement = select(invoices.c.partner_id, invoices.c.id).where(
            invoices.c.status == InvoiceStatus.OPEN.value
        )
        if months is not None:
            statement = statement.where(invoices.c.month.in_(list(months)))
        rows = await self._connection.execute(statement.order_by(invoices.c.partner_id, invoices.c.id))
        return [(row.partner_id, row.id) for row in rows]

    async def invoice_partner(self, invoice_id: str) -> str | None:
        """Whose invoice this is (for webhooks, which name only our invoice id)."""
        found = await self._connection.execute(
            select(invoices.c.partner_id).where(invoices.c.id == invoice_id)
        )
        return found.scalar_one_or_none()

    async def oldest_past_due(self, partner_id: str) -> str | None:
        """The partner's oldest invoice still past due (the reason its standing gives), if any."""
        found = await self._connection.execute(
            select(invoices.c.id)
            .where(invoices.c.partner_id == partner_id, invoices.c.status == InvoiceStatus.PAST_DUE.value)
            .order_by(invoices.c.month, invoices.c.id)
            .limit(1)
        )
        return found.scalar_one_or_none()


def _to_dunning(row: Row[Any]) -> Dunning:
    return Dunning(
        invoice_id=row.invoice_id,
        partner_id=row.partner_id,
        past_due_since=row.past_due_since,
        retries_done=row.retries_done,
        licenses_revoked_at=row.licenses_revoked_at,
    )
