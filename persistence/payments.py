"""Payments as stored: the partner's Stripe customer, mirrored cards, charge attempts, received webhooks
and the dunning state of past-due invoices.

An attempt row is committed before the provider is called; its idempotency key and the (invoice,
number) pair are unique, so two collectors can never create the same attempt twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    Row,
    String,
    Table,
    UniqueConstraint,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.invoices import InvoiceStatus
from domain.payments import AttemptStatus, ChargeTrigger, PaymentAttempt, PaymentMethod
from persistence.invoices import invoices
from persistence.metadata import metadata
from persistence.pagination import CursorCodec, Page, SortKey, cursor_position, keyset_page
from persistence.types import UTCDateTime

PAYMENT_METHOD_CURSOR = CursorCodec("payment_methods", [cursor_position])

stripe_customers = Table(
    "stripe_customers",
    metadata,
    Column("partner_id", String(32), ForeignKey("partners.id"), primary_key=True),
    Column("customer_id", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
)

payment_methods = Table(
    "payment_methods",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("partner_id", String(32), ForeignKey("partners.id"), nullable=False),
    Column("stripe_payment_method_id", String(64), nullable=False, unique=True),
    Column("brand", String(32), nullable=False),
    Column("last4", String(4), nullable=False),
    Column("exp_month", Integer, nullable=False),
    Column("exp_year", Integer, nullable=False),
    Column("is_primary", Boolean, nullable=False),
    # Order of addition within the partner (instants can tie): the fallback order after the primary.
    Column("position", Integer, nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("removed_at", UTCDateTime(), nullable=True),
    UniqueConstraint("partner_id", "position", name="uq_payment_methods_partner_position"),
)

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
    UniqueConstraint("invoice_id", "number", name="uq_payment_attempts_invoice_number"),
    Index("ix_payment_attempts_payment_intent", "payment_intent_id"),
)

webhook_events = Table(
    "webhook_events",
    metadata,
    Column("id", String(255), primary_key=True),  # the provider's event id: deliveries are deduplicated
    Column("type", String(64), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
)

invoice_dunning = Table(
    "invoice_dunning",
    metadata,
    Column("invoice_id", String(32), ForeignKey("invoices.id"), primary_key=True),
    Column("partner_id", String(32), ForeignKey("partners.id"), nullable=False),
    Column("past_due_since", UTCDateTime(), nullable=False),
    Column("retries_done", Integer, nullable=False),
    Column("licenses_revoked_at", UTCDateTime(), nullable=True),
)


class CustomerRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def get(self, partner_id: str) -> str | None:
        found = await self._connection.execute(
            select(stripe_customers.c.customer_id).where(stripe_customers.c.partner_id == partner_id)
        )
        return found.scalar_one_or_none()

    async def add(self, partner_id: str, customer_id: str, at: datetime) -> None:
        await self._connection.execute(
            stripe_customers.insert().values(partner_id=partner_id, customer_id=customer_id, created_at=at)
        )

    async def forget(self, partner_id: str) -> None:
        """Drop the link to a customer the provider no longer knows (a restarted localstripe)."""
        await self._connection.execute(
            stripe_customers.delete().where(stripe_customers.c.partner_id == partner_id)
        )


class PaymentMethodRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(self, method: PaymentMethod) -> None:
        await self._connection.execute(payment_methods.insert().values(**_method_columns(method)))

    async def active(self, partner_id: str) -> list[PaymentMethod]:
        """The partner's cards on file, oldest first."""
        rows = await self._connection.execute(
            select(payment_methods)
            .where(payment_methods.c.partner_id == partner_id, payment_methods.c.removed_at.is_(None))
            .order_by(payment_methods.c.position)
        )
        return [_to_method(row) for row in rows]

    async def next_position(self, partner_id: str) -> int:
        found = await self._connection.execute(
            select(func.coalesce(func.max(payment_methods.c.position), 0)).where(
                payment_methods.c.partner_id == partner_id
            )
        )
        return int(found.scalar_one()) + 1

    async def by_stripe_id(self, stripe_id: str) -> PaymentMethod | None:
        """The card with this provider id, whoever holds or held it."""
        row = (
            await self._connection.execute(
                select(payment_methods).where(payment_methods.c.stripe_payment_method_id == stripe_id)
            )
        ).one_or_none()
        return None if row is None else _to_method(row)

    async def get(self, method_id: str) -> PaymentMethod | None:
        row = (
            await self._connection.execute(select(payment_methods).where(payment_methods.c.id == method_id))
        ).one_or_none()
        return None if row is None else _to_method(row)

    async def make_primary(self, partner_id: str, method_id: str | None) -> None:
        """`method_id` becomes the partner's only primary card (None: no primary)."""
        await self._connection.execute(
            update(payment_methods)
            .where(payment_methods.c.partner_id == partner_id)
            .values(is_primary=payment_methods.c.id == method_id if method_id else False)
        )

    async def remove(self, method_id: str, at: datetime) -> None:
        await self._connection.execute(
            update(payment_methods)
            .where(payment_methods.c.id == method_id)
            .values(removed_at=at, is_primary=False)
        )

    async def page(self, partner_id: str, *, first: int | None, after: str | None) -> Page[PaymentMethod]:
        """Cards on file, in the order they were added."""
        return await keyset_page(
            self._connection,
            select(payment_methods).where(
                payment_methods.c.partner_id == partner_id, payment_methods.c.removed_at.is_(None)
            ),
            SortKey([payment_methods.c.position], PAYMENT_METHOD_CURSOR),
            first=first,
            after=after,
            to_item=_to_method,
            cursor_values=lambda row: [row.position],
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
        at: datetime | None,
        payment_intent_id: str | None = None,
        failure_code: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"status": status.value, "completed_at": at, "failure_code": failure_code}
        if payment_intent_id is not None:
            values["payment_intent_id"] = payment_intent_id
        await self._connection.execute(
            update(payment_attempts).where(payment_attempts.c.id == attempt_id).values(**values)
        )


class WebhookEventLog:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def seen(self, event_id: str) -> bool:
        found = await self._connection.execute(
            select(webhook_events.c.id).where(webhook_events.c.id == event_id)
        )
        return found.first() is not None

    async def add(self, event_id: str, event_type: str, at: datetime) -> None:
        await self._connection.execute(
            webhook_events.insert().values(id=event_id, type=event_type[:64], received_at=at)
        )


@dataclass(frozen=True)
class Dunning:
    """Where a past-due invoice is in dunning."""

    invoice_id: str
    partner_id: str
    past_due_since: datetime
    retries_done: int
    licenses_revoked_at: datetime | None


class CollectionRepository:
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

    async def past_due_count(self, partner_id: str) -> int:
        found = await self._connection.execute(
            select(func.count())
            .select_from(invoices)
            .where(invoices.c.partner_id == partner_id, invoices.c.status == InvoiceStatus.PAST_DUE.value)
        )
        return int(found.scalar_one())


def _method_columns(method: PaymentMethod) -> dict[str, Any]:
    return {
        "id": method.id,
        "partner_id": method.partner_id,
        "stripe_payment_method_id": method.stripe_id,
        "brand": method.brand,
        "last4": method.last4,
        "exp_month": method.exp_month,
        "exp_year": method.exp_year,
        "is_primary": method.is_primary,
        "position": method.position,
        "created_at": method.created_at,
        "removed_at": method.removed_at,
    }


def _to_method(row: Row[Any]) -> PaymentMethod:
    return PaymentMethod(
        id=row.id,
        partner_id=row.partner_id,
        stripe_id=row.stripe_payment_method_id,
        brand=row.brand,
        last4=row.last4,
        exp_month=row.exp_month,
        exp_year=row.exp_year,
        is_primary=bool(row.is_primary),
        position=row.position,
        created_at=row.created_at,
        removed_at=row.removed_at,
    )


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
    )


def _to_dunning(row: Row[Any]) -> Dunning:
    return Dunning(
        invoice_id=row.invoice_id,
        partner_id=row.partner_id,
        past_due_since=row.past_due_since,
        retries_done=row.retries_done,
        licenses_revoked_at=row.licenses_revoked_at,
    )
