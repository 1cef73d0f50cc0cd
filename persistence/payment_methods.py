"""Cards as stored: the partner's Stripe customer and the cards mirrored from it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    Column,
    ForeignKey,
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

from domain.payments import PaymentMethod
from persistence.metadata import metadata
from persistence.pagination import CursorCodec, Page, SortKey, cursor_position, keyset_page
from persistence.types import UTCDateTime

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


PAYMENT_METHOD_CURSOR = CursorCodec("payment_methods", [cursor_position])


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
