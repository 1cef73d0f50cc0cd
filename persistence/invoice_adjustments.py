"""Refunds of paid invoices as stored: one row per refund staff asked for, written (pending, with the
idempotency key Stripe receives) before Stripe is called, then completed with Stripe's answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Integer,
    Row,
    String,
    Table,
    UniqueConstraint,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.invoice_adjustments import Refund, RefundStatus
from persistence.metadata import metadata
from persistence.types import UTCDateTime

invoice_refunds = Table(
    "invoice_refunds",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("invoice_id", String(32), ForeignKey("invoices.id"), nullable=False),
    Column("partner_id", String(32), ForeignKey("partners.id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("reason", String(500), nullable=False),
    Column("status", String(16), nullable=False),
    Column("provider_key", String(128), nullable=False, unique=True),
    Column("request_key", String(255), nullable=True),
    Column("provider_refund_id", String(64), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime(), nullable=False),
    Column("completed_at", UTCDateTime(), nullable=True),
    Column("failure_code", String(64), nullable=True),
    Column("failure_message", String(500), nullable=True),
    UniqueConstraint("invoice_id", "number", name="uq_invoice_refunds_invoice_number"),
)


class RefundRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(self, refund: Refund) -> None:
        await self._connection.execute(
            invoice_refunds.insert().values(
                id=refund.id,
                invoice_id=refund.invoice_id,
                partner_id=refund.partner_id,
                number=refund.number,
                amount=refund.amount,
                reason=refund.reason,
                status=refund.status.value,
                provider_key=refund.provider_key,
                request_key=refund.request_key,
                created_at=refund.created_at,
                sent_at=refund.sent_at,
            )
        )

    async def for_invoice(self, invoice_id: str) -> list[Refund]:
        """Every refund of the invoice, oldest first."""
        rows = await self._connection.execute(
            select(invoice_refunds)
            .where(invoice_refunds.c.invoice_id == invoice_id)
            .order_by(invoice_refunds.c.number)
        )
        return [_to_refund(row) for row in rows]

    async def resend(self, refund_id: str, at: datetime) -> None:
        """The refund is being sent again (its answer was lost): in flight from `at`."""
        await self._update(refund_id, sent_at=at)

    async def record(
        self,
        refund_id: str,
        status: RefundStatus,
        *,
        at: datetime,
        provider_refund_id: str | None = None,
        failure_code: str | None = None,
        failure_message: str | None = None,
    ) -> None:
        """Store Stripe's answer."""
        await self._update(
            refund_id,
            status=status.value,
            completed_at=at,
            provider_refund_id=provider_refund_id,
            failure_code=failure_code,
            failure_message=failure_message[:500] if failure_message else None,
        )

    async def _update(self, refund_id: str, **values: Any) -> None:
        await self._connection.execute(
            update(invoice_refunds).where(invoice_refunds.c.id == refund_id).values(**values)
        )


def _to_refund(row: Row[Any]) -> Refund:
    return Refund(
        id=row.id,
        invoice_id=row.invoice_id,
        partner_id=row.partner_id,
        number=row.number,
        amount=row.amount,
        reason=row.reason,
        status=RefundStatus(row.status),
        provider_key=row.provider_key,
        created_at=row.created_at,
        sent_at=row.sent_at,
        request_key=row.request_key,
        provider_refund_id=row.provider_refund_id,
        completed_at=row.completed_at,
        failure_code=row.failure_code,
        failure_message=row.failure_message,
    )
