"""The partners table: identity, billing zone and currency, the per-partner event sequence."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Column, String, Table, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.partners import Partner
from domain.standing import Standing, StandingState
from persistence.metadata import metadata
from persistence.pagination import CursorCodec, Page, SortKey, cursor_key, cursor_text, keyset_page
from persistence.sqlite_connections import PreparedRead
from persistence.types import UTCDateTime

partners = Table(
    "partners",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("billing_zone", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    # Incremented under the partner's row lock, so the event feed's cursor commits in order
    # (docs/rules.md, "The event feed").
    Column("event_seq", BigInteger, nullable=False, server_default="0"),
    # Account standing (domain/standing.py); a new partner has no payment method yet.
    Column("standing", String(32), nullable=False, server_default="no_payment_method"),
    Column("standing_since", UTCDateTime(), nullable=True),
    Column("standing_reason_invoice_id", String(32), nullable=True),
)


PARTNER_CURSOR = CursorCodec("partners", [cursor_text, cursor_key])


class PartnerRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(self, partner: Partner) -> None:
        await self._connection.execute(
            partners.insert().values(
                id=partner.id,
                name=partner.name,
                billing_zone=partner.billing_zone,
                currency=partner.currency,
                created_at=partner.created_at,
            )
        )

    async def get(self, partner_id: str) -> Partner | None:
        rows = await _PARTNER_READ.rows(self._connection, {"partner_id": partner_id})
        return _to_partner(rows[0]) if rows else None

    async def get_with_standing(self, partner_id: str) -> tuple[Partner, Standing] | None:
        """The partner and its standing, both from its one row (the dashboard asks for both)."""
        row = (await self._connection.execute(_PARTNER, {"partner_id": partner_id})).one_or_none()
        return None if row is None else (_to_partner(row), standing_of_row(row))

    async def set_currency(self, partner_id: str, currency: str) -> None:
        await self._connection.execute(
            update(partners).where(partners.c.id == partner_id).values(currency=currency)
        )

    async def page(
        self, *, search: str | None, standing: str | None, first: int | None, after: str | None
    ) -> Page[Partner]:
        """Partners by name (then id); `search` matches the name or the id, ignoring case."""
        statement = select(partners)
        if search:
            statement = statement.where(
                or_(
                    partners.c.name.icontains(search, autoescape=True),
                    partners.c.id.icontains(search, autoescape=True),
                )
            )
        if standing is not None:
            statement = statement.where(partners.c.standing == standing)
        return await keyset_page(
            self._connection,
            statement,
            SortKey([partners.c.name, partners.c.id], PARTNER_CURSOR),
            first=first,
            after=after,
            to_item=_to_partner,
            cursor_values=lambda row: [row.name, row.id],
        )

    async def ids_created_before(self, instant: datetime) -> list[str]:
        rows = await self._connection.execute(
            select(partners.c.id).where(partners.c.created_at < instant).order_by(partners.c.id)
        )
        return list(rows.scalars())

    async def lock(self, partner_id: str) -> None:
        """Serialize every writer for this partner (row lock on PostgreSQL; SQLite already holds the lock)."""
        statement = select(partners.c.id).where(partners.c.id == partner_id)
        if self._connection.dialect.name != "sqlite":
            statement = statement.with_for_update()
        await self._connection.execute(statement)

    async def next_event_seq(self, partner_id: str) -> int:
        """Take the partner's next event sequence number (this also row-locks the partner)."""
        result = await self._connection.execute(
            update(partners)
            .where(partners.c.id == partner_id)
            .values(event_seq=partners.c.event_seq + 1)
            .returning(partners.c.event_seq)
        )
        return int(result.scalar_one())


def _to_partner(row: Sequence[Any]) -> Partner:
    # By position (a Row, or a PreparedRead's list): the table's first five columns, checked below.
    return Partner(id=row[0], name=row[1], billing_zone=row[2], currency=row[3], created_at=row[4])


if [column.name for column in partners.columns][:5] != [
    "id",
    "name",
    "billing_zone",
    "currency",
    "created_at",
]:
    raise TypeError("the partners table must begin with id, name, billing_zone, currency, created_at")


# Built once (read on most requests): building a statement costs more than SQLite running it.
_PARTNER = select(partners).where(partners.c.id == bindparam("partner_id"))
# The partner alone (the caller's currency and zone, read for prices on most requests).
_PARTNER_READ = PreparedRead(_PARTNER)


def standing_of_row(row: Any) -> Standing:
    """The standing stored on a partner's row (a Row with its `standing*` columns)."""
    return Standing(StandingState(row.standing), row.standing_since, row.standing_reason_invoice_id)
