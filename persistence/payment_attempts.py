"""Charge attempts as stored, and which PaymentIntent paid each invoice.

An attempt row is committed before the provider is called, and its PaymentIntent id before that intent is
confirmed; its idempotency key and the (invoice, number) pair are unique, so two collectors can never
create the same attempt twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    Row,
    String,
    Table,
    UniqueConstraint,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.payments import AttemptStatus, ChargeTrigger, PaymentAttempt
from persistence.metadata import metadata
from persistence.types import UTCDateTime

payment_attempts = Table(
    "payment_attempts",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("invoice_id", String(32), ForeignKey("invoices.id"), nullable=False),
    Column("partner_id", String(32), ForeignKey("partners.id"), nullable=False),
    Column("payment_method_id", String(32), ForeignKey("payment_methods.id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("idempotency_key", String(128), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("trigger", String(16), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("payment_intent_id", String(64), nullable=True),
    Column("failure_code", String(64), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("completed_at", UTCDateTime(), nullable=True),
    Column("sent_at", UTCDateTime(), nullable=True),
    Column("decline_code", String(64), nullable=True),
    Column("failure_message", String(500), nullable=True),
    UniqueConstraint("invoice_id", "number", name="uq_payment_attempts_invoice_number"),
    Index("ix_payment_attempts_payment_intent", "payment_intent_id"),
)

# Which PaymentIntent paid an invoice: its own success webhook is then a no-op, another one a duplicate.
invoice_payments = Table(
    "invoice_payments",
    metadata,
    Column("invoice_id", String(32), ForeignKey("invoices.id"), primary_key=True),
    Column("payment_intent_id", String(64), nullable=True),  # None: a zero invoice, paid without a charge
    Column("attempt_id", String(32), ForeignKey("payment_attempts.id"), nullable=True),
    Column("paid_at", UTCDateTime(), nullable=False),
)


class PaymentAttemptRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(self, attempt: PaymentAttempt) -> None:
        await self._connection.execute(payment_attempts.insert().values(**_attempt_columns(attempt)))

    async def for_invoice(self, invoice_id: str) -> list[PaymentAttempt]:
        rows = await self._connection.execute(
            select(payment_attempts)
            .where(payment_attempts.c.invoice_id == invoice_id)
            .order_by(payment_attempts.c.number)
        )
        return [_to_attempt(row) for row in rows]

    async def get(self, attempt_id: str) -> PaymentAttempt | None:
        row = (
            await self._connection.execute(
                select(payment_attempts).where(payment_attempts.c.id == attempt_id)
            )
        ).one_or_none()
        return None if row is None else _to_attempt(row)

    async def by_payment_intent(self, payment_intent_id: str) -> PaymentAttempt | None:
        row = (
            await self._connection.execute(
                select(payment_attempts).where(payment_attempts.c.payment_intent_id == payment_intent_id)
            )
        ).first()
        return None if row is None else _to_attempt(row)

    async def record(
        self,
        attempt_id: str,
        status: AttemptStatus,
        *,
        at: datetime,
        payment_intent_id: str | None = None,
        failure_code: str | None = None,
        decline_code: str | None = None,
        failure_message: str | None = None,
    ) -> None:
        """Store the provider's answer (or that it was lost: UNKNOWN)."""
        values: dict[str, Any] = {
            "status": status.value,
            "completed_at": at,
            "failure_code": failure_code,
            "decline_code": decline_code,
            "failure_message": failure_message[:500] if failure_message else None,
        }
        if payment_intent_id is not None:
            values["payment_intent_id"] = payment_intent_id
        await self._update(attempt_id, **values)

    async def resend(self, attempt_id: str, at: datetime) -> None:
        """The attempt is being sent (again): pending, and in flight from `at`."""
        await self._update(attempt_id, status=AttemptStatus.PENDING.value, sent_at=at, completed_at=None)

    async def link_payment_intent(self, attempt_id: str, payment_intent_id: str) -> None:
        """Store the PaymentIntent before it is confirmed, so a lost answer is resumed by its id."""
        await self._update(attempt_id, payment_intent_id=payment_intent_id)

    async def _update(self, attempt_id: str, **values: Any) -> None:
        await self._connection.execute(
            update(payment_attempts).where(payment_attempts.c.id == attempt_id).values(**values)
        )


class InvoicePaymentRepository:
    """Which PaymentIntent paid each invoice."""

    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(
        self, invoice_id: str, *, payment_intent_id: str | None, attempt_id: str | None, at: datetime
    ) -> None:
        await self._connection.execute(
            invoice_payments.insert().values(
                invoice_id=invoice_id, payment_intent_id=payment_intent_id, attempt_id=attempt_id, paid_at=at
            )
        )

    async def paid_by(self, invoice_id: str) -> str | None:
        """The PaymentIntent that paid the invoice (None: unpaid, or paid without a charge)."""
        found = await self._connection.execute(
            select(invoice_payments.c.payment_intent_id).where(invoice_payments.c.invoice_id == invoice_id)
        )
        return found.scalar_one_or_none()


def _attempt_columns(attempt: PaymentAttempt) -> dict[str, Any]:
    return {
        "id": attempt.id,
        "invoice_id": attempt.invoice_id,
        "partner_id": attempt.partner_id,
        "payment_method_id": attempt.payment_method_id,
        "number": attempt.number,
        "idempotency_key": attempt.idempotency_key,
        "status": attempt.status.value,
        "trigger": attempt.trigger.value,
        "amount": attempt.amount,
        "currency": attempt.currency,
        "payment_intent_id": attempt.payment_intent_id,
        "failure_code": attempt.failure_code,
        "created_at": attempt.created_at,
        "completed_at": attempt.completed_at,
        "sent_at": attempt.sent_at,
        "decline_code": attempt.decline_code,
        "failure_message": attempt.failure_message,
    }


def _to_attempt(row: Row[Any]) -> PaymentAttempt:
    return PaymentAttempt(
        id=row.id,
        invoice_id=row.invoice_id,
        partner_id=row.partner_id,
        payment_method_id=row.payment_method_id,
        number=row.number,
        idempotency_key=row.idempotency_key,
        status=AttemptStatus(row.status),
        trigger=ChargeTrigger(row.trigger),
        amount=row.amount,
        currency=row.currency,
        created_at=row.created_at,
        payment_intent_id=row.payment_intent_id,
        failure_code=row.failure_code,
        completed_at=row.completed_at,
        sent_at=row.sent_at,
        decline_code=row.decline_code,
        failure_message=row.failure_message,
    )
