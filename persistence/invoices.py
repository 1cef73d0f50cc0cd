"""Invoices as stored at month close: header, product lines and per-license day-lines.

One invoice per partner and month is a database constraint, so a re-run or a race cannot bill twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    Row,
    String,
    Table,
    UniqueConstraint,
    bindparam,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.billing import BillingMonth, Costs, DayLine, LicenseCounts, ProductLine, Statement
from domain.invoices import Invoice, InvoiceStatus
from persistence.metadata import metadata
from persistence.pagination import (
    CursorCodec,
    Page,
    SortKey,
    cursor_instant,
    cursor_key,
    cursor_position,
    keyset_page,
)
from persistence.types import UTCDateTime

invoices = Table(
    "invoices",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("partner_id", String(32), ForeignKey("partners.id"), nullable=False),
    Column("month", String(7), nullable=False),
    Column("number", String(64), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("zone", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("period_start", UTCDateTime(), nullable=False),
    Column("period_end", UTCDateTime(), nullable=False),
    Column("finalized_at", UTCDateTime(), nullable=False),
    Column("due_at", UTCDateTime(), nullable=False),
    Column("paid_at", UTCDateTime(), nullable=True),
    Column("total", BigInteger, nullable=False),
    Column("license_days", BigInteger, nullable=False),
    Column("assigned_amount", BigInteger, nullable=False),
    Column("unassigned_amount", BigInteger, nullable=False),
    Column("licenses_assigned", Integer, nullable=False),
    Column("licenses_unassigned", Integer, nullable=False),
    # Why staff voided the invoice or marked it uncollectible.
    Column("status_reason", String(500), nullable=True),
    UniqueConstraint("partner_id", "month", name="uq_invoices_partner_month"),
    Index("ix_invoices_partner_finalized", "partner_id", "finalized_at"),
)

invoice_lines = Table(
    "invoice_lines",
    metadata,
    Column("invoice_id", String(32), ForeignKey("invoices.id"), nullable=False),
    Column("product_slug", String(64), nullable=False),
    Column("license_days", BigInteger, nullable=False),
    Column("daily_price_micros", BigInteger, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("licenses_assigned", Integer, nullable=False),
    Column("licenses_unassigned", Integer, nullable=False),
    # Order within the invoice (product, then the first day the price applied); 0 on invoices from
    # before dated prices, which had one line per product.
    Column("position", Integer, nullable=False, server_default="0"),
    PrimaryKeyConstraint("invoice_id", "product_slug", "daily_price_micros", name="pk_invoice_lines"),
)

invoice_day_lines = Table(
    "invoice_day_lines",
    metadata,
    Column("invoice_id", String(32), ForeignKey("invoices.id"), nullable=False),
    # Position in the statement's order (product, key, holding): the keyset for paging.
    Column("position", Integer, nullable=False),
    Column("holding_id", String(32), nullable=False),
    Column("license_key", String(128), nullable=False),
    Column("product_slug", String(64), nullable=False),
    Column("site", String(255), nullable=True),
    Column("days", Integer, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("daily_price_micros", BigInteger, nullable=False),
    PrimaryKeyConstraint("invoice_id", "position", name="pk_invoice_day_lines"),
)

# One row per year of finalization: the last invoice number given that year. Taking the next number
# updates the row, which locks it until the finalizing transaction ends, so numbers have no gaps (a
# rolled-back close gives its number back) and no duplicates under concurrent month closes.
invoice_number_counters = Table(
    "invoice_number_counters",
    metadata,
    Column("year", Integer, primary_key=True, autoincrement=False),
    Column("last_number", Integer, nullable=False),
)

DAY_LINE_BATCH = 5_000
INVOICE_CURSOR = CursorCodec("invoices", [cursor_instant, cursor_key])
# Stored and estimated day-lines share one order (their position), so they share one cursor.
DAY_LINE_CURSOR = CursorCodec("day_lines", [cursor_position])


# Read by every estimate of a month that is over: built once (building a statement costs SQLAlchemy
# more than SQLite takes to answer it).
INVOICE_OF_MONTH = select(invoices).where(
    invoices.c.partner_id == bindparam("partner_id", type_=String),
    invoices.c.month == bindparam("month", type_=String),
)


class InvoiceRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(self, invoice: Invoice, statement: Statement) -> None:
        """Store the invoice with its product lines and every day-line (batched inserts)."""
        await self._connection.execute(invoices.insert().values(**_invoice_columns(invoice)))
        if statement.product_lines:
            await self._connection.execute(
                invoice_lines.insert(),
                [
                    {
                        "invoice_id": invoice.id,
                        "product_slug": line.product_slug,
                        "license_days": line.license_days,
                        "daily_price_micros": line.daily_price_micros,
                        "amount": line.amount,
                        "licenses_assigned": line.counts.assigned,
                        "licenses_unassigned": line.counts.unassigned,
                        "position": position,
                    }
                    for position, line in enumerate(statement.product_lines)
                ],
            )
        day_lines = statement.day_lines
        for start in range(0, len(day_lines), DAY_LINE_BATCH):
            await self._connection.execute(
                invoice_day_lines.insert(),
                [
                    {
                        "invoice_id": invoice.id,
                        "position": position,
                        "holding_id": line.holding_id,
                        "license_key": line.key,
                        "product_slug": line.product_slug,
                        "site": line.site,
                        "days": line.days,
                        "amount": line.amount,
                        "daily_price_micros": line.daily_price_micros,
                    }
                    for position, line in enumerate(day_lines[start : start + DAY_LINE_BATCH], start)
                ],
            )

    async def renumber(self, invoice_id: str, number: str) -> None:
        """Give an invoice stored under a provisional number its real one (same transaction)."""
        await self._connection.execute(
            update(invoices).where(invoices.c.id == invoice_id).values(number=number)
        )

    async def next_number(self, year: int) -> int:
        """Take the next invoice number of `year` (1, 2, ...); the counter row stays locked until commit."""
        counters = invoice_number_counters
        # The year's first close creates its row; a concurrent first close waits for it, then skips.
        insert = postgresql.insert if self._connection.dialect.name == "postgresql" else sqlite.insert
        await self._connection.execute(
            insert(counters).values(year=year, last_number=0).on_conflict_do_nothing(index_elements=["year"])
        )
        taken = await self._connection.execute(
            update(counters)
            .where(counters.c.year == year)
            .values(last_number=counters.c.last_number + 1)
            .returning(counters.c.last_number)
        )
        return int(taken.scalar_one())

    async def latest_month(self) -> BillingMonth | None:
        """The latest month any partner's invoice was finalized for (months up to it are closed)."""
        latest = (await self._connection.execute(select(func.max(invoices.c.month)))).scalar_one_or_none()
        return None if latest is None else BillingMonth.parse(latest)

    async def exists(self, partner_id: str, month: BillingMonth) -> bool:
        found = await self._connection.execute(
            select(invoices.c.id).where(invoices.c.partner_id == partner_id, invoices.c.month == str(month))
        )
        return found.first() is not None

    async def get(
        self, partner_id: str | None, invoice_id: str, *, for_update: bool = False
    ) -> Invoice | None:
        """The invoice, if it belongs to `partner_id` (None: whoever it belongs to, for staff)."""
        statement = select(invoices).where(invoices.c.id == invoice_id)
        if partner_id is not None:
            statement = statement.where(invoices.c.partner_id == partner_id)
        if for_update and self._connection.dialect.name != "sqlite":
            statement = statement.with_for_update()
        row = (await self._connection.execute(statement)).one_or_none()
        if row is None:
            return None
        return (await self._with_lines([row]))[0]

    async def for_month(self, partner_id: str, month: BillingMonth) -> Invoice | None:
        row = (
            await self._connection.execute(INVOICE_OF_MONTH, {"partner_id": partner_id, "month": str(month)})
        ).one_or_none()
        return None if row is None else (await self._with_lines([row]))[0]

    async def page(
        self, partner_id: str, *, statuses: Sequence[InvoiceStatus], first: int | None, after: str | None
    ) -> Page[Invoice]:
        """Newest first."""
        statement = select(invoices).where(invoices.c.partner_id == partner_id)
        if statuses:
            statement = statement.where(invoices.c.status.in_([s.value for s in statuses]))
        rows: Page[Row[Any]] = await keyset_page(
            self._connection,
            statement,
            SortKey([invoices.c.finalized_at, invoices.c.id], INVOICE_CURSOR, descending=True),
            first=first,
            after=after,
            to_item=lambda row: row,
            cursor_values=lambda row: [row.finalized_at, row.id],
        )
        with_lines = await self._with_lines([row for _, row in rows.items])
        return Page(
            items=[(cursor, invoice) for (cursor, _), invoice in zip(rows.items, with_lines, strict=True)],
            has_next_page=rows.has_next_page,
            has_previous_page=rows.has_previous_page,
            total_count=rows.total_count,
        )

    async def day_lines(
        self, invoice_id: str, *, first: int | None, after: str | None, count_total: bool = True
    ) -> Page[DayLine]:
        return await keyset_page(
            self._connection,
            select(invoice_day_lines).where(invoice_day_lines.c.invoice_id == invoice_id),
            SortKey([invoice_day_lines.c.position], DAY_LINE_CURSOR),
            first=first,
            after=after,
            to_item=_to_day_line,
            cursor_values=lambda row: [row.position],
            count_total=count_total,
        )

    async def day_lines_after(self, invoice_id: str, position: int, limit: int) -> list[tuple[int, DayLine]]:
        """Up to `limit` stored day-lines after `position` (-1: from the first), with their positions."""
        rows = await self._connection.execute(
            select(invoice_day_lines)
            .where(invoice_day_lines.c.invoice_id == invoice_id, invoice_day_lines.c.position > position)
            .order_by(invoice_day_lines.c.position)
            .limit(limit)
        )
        return [(row.position, _to_day_line(row)) for row in rows]

    async def set_status(
        self,
        invoice_id: str,
        status: InvoiceStatus,
        *,
        paid_at: datetime | None = None,
        reason: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"status": status.value}
        if paid_at is not None:
            values["paid_at"] = paid_at
        if reason is not None:
            values["status_reason"] = reason
        await self._connection.execute(update(invoices).where(invoices.c.id == invoice_id).values(**values))

    async def _with_lines(self, rows: Sequence[Row[Any]]) -> list[Invoice]:
        """Attach product lines to invoice rows with one statement, whatever the number of invoices."""
        ids = [row.id for row in rows]
        lines: dict[str, list[ProductLine]] = {invoice_id: [] for invoice_id in ids}
        if ids:
            line_rows = await self._connection.execute(
                select(invoice_lines)
                .where(invoice_lines.c.invoice_id.in_(ids))
                .order_by(invoice_lines.c.invoice_id, invoice_lines.c.position, invoice_lines.c.product_slug)
            )
            for line in line_rows:
                lines[line.invoice_id].append(
                    ProductLine(
                        product_slug=line.product_slug,
                        license_days=line.license_days,
                        daily_price_micros=line.daily_price_micros,
                        amount=line.amount,
                        counts=LicenseCounts(line.licenses_assigned, line.licenses_unassigned),
                    )
                )
        return [_to_invoice(row, tuple(lines[row.id])) for row in rows]


def _invoice_columns(invoice: Invoice) -> dict[str, Any]:
    return {
        "id": invoice.id,
        "partner_id": invoice.partner_id,
        "month": str(invoice.month),
        "number": invoice.number,
        "status": invoice.status.value,
        "zone": invoice.zone,
        "currency": invoice.currency,
        "period_start": invoice.period_start,
        "period_end": invoice.period_end,
        "finalized_at": invoice.finalized_at,
        "due_at": invoice.due_at,
        "paid_at": invoice.paid_at,
        "total": invoice.total,
        "license_days": invoice.license_days,
        "assigned_amount": invoice.costs.assigned,
        "unassigned_amount": invoice.costs.unassigned,
        "licenses_assigned": invoice.counts.assigned,
        "licenses_unassigned": invoice.counts.unassigned,
        "status_reason": invoice.status_reason,
    }


def _to_invoice(row: Row[Any], lines: tuple[ProductLine, ...]) -> Invoice:
    return Invoice(
        id=row.id,
        partner_id=row.partner_id,
        month=BillingMonth.parse(row.month),
        number=row.number,
        status=InvoiceStatus(row.status),
        zone=row.zone,
        currency=row.currency,
        period_start=row.period_start,
        period_end=row.period_end,
        finalized_at=row.finalized_at,
        due_at=row.due_at,
        paid_at=row.paid_at,
        total=row.total,
        license_days=row.license_days,
        counts=LicenseCounts(row.licenses_assigned, row.licenses_unassigned),
        costs=Costs(row.assigned_amount, row.unassigned_amount),
        lines=lines,
        status_reason=row.status_reason,
    )


def _to_day_line(row: Row[Any]) -> DayLine:
    return DayLine(
        row.holding_id,
        row.license_key,
        row.product_slug,
        row.site,
        row.days,
        row.amount,
        row.daily_price_micros,
    )
