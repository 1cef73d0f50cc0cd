"""License holdings and transfers: tables, and the repositories the license use cases drive.

`licenses` has one row per holding: a partner's possession of a license key, from held_from to held_until.

Billing contract (the billing feature computes license-days from exactly these columns): a holding is
billed on each calendar day, in the partner's billing zone, of the closed interval
[held_from, held_until] (held_until NULL = still held). held_from is the issue instant, or for a
received transfer the acceptance instant; held_until is the revoke instant, or the instant the holding
was transferred out. When a holding ended by transfer (state 'transferred'), its last day (the transfer
day) is NOT billed to it: the receiver's holding, which starts that same day, is billed for it, so each
license-day is billed exactly once within one zone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    ForeignKey,
    Index,
    Integer,
    Select,
    String,
    Table,
    bindparam,
    case,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.billing import billable_span
from domain.errors import DomainError, ErrorCode
from domain.licenses import (
    LIVE_STATES,
    License,
    LicenseFilter,
    LicenseOrder,
    LicenseOrderField,
    LicenseState,
    Transfer,
)
from persistence.metadata import metadata
from persistence.pagination import CursorCodec, Page, SortKey, cursor_instant, cursor_key, keyset_page
from persistence.partners import partners
from persistence.products import products
from persistence.types import UTCDateTime

licenses = Table(
    "licenses",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("key", String(128), nullable=False),
    Column("partner_id", String(32), ForeignKey("partners.id"), nullable=False),
    Column("product_slug", String(64), ForeignKey("products.slug"), nullable=False),
    Column("state", String(16), nullable=False),
    Column("site", String(255), nullable=True),
    Column("held_from", UTCDateTime(), nullable=False),
    Column("held_until", UTCDateTime(), nullable=True),
    Column("issued_at", UTCDateTime(), nullable=False),
    Column("assigned_at", UTCDateTime(), nullable=True),
    Column("revoked_at", UTCDateTime(), nullable=True),
    Column("transferred_at", UTCDateTime(), nullable=True),
    Column("version", Integer, nullable=False),
    # The holding's billed local days in its partner's zone, as day numbers (date.toordinal()), from
    # domain.billing.billable_span; last NULL while the holding is active. A month's estimate sums
    # these spans clipped to the month in SQL (persistence/billing.py).
    Column("first_billed_day", Integer, nullable=False),
    Column("last_billed_day", Integer, nullable=True),
    # One live holding per key; one assigned license per product per site (money depends on it:
    # docs/rules.md, "Concurrency").
    Index(
        "uq_licenses_live_key",
        "key",
        unique=True,
        sqlite_where=text("state IN ('issued', 'assigned')"),
        postgresql_where=text("state IN ('issued', 'assigned')"),
    ),
    Index(
        "uq_licenses_product_site",
        "product_slug",
        "site",
        unique=True,
        sqlite_where=text("state = 'assigned'"),
        postgresql_where=text("state = 'assigned'"),
    ),
    Index("ix_licenses_partner_id_held_from", "partner_id", "held_from"),
    Index("ix_licenses_partner_id_held_until", "partner_id", "held_until"),
    Index("ix_licenses_partner_id_issued_at", "partner_id", "issued_at", "id"),
    Index("ix_licenses_partner_id_key", "partner_id", "key"),
    # Covers everything the month's estimate reads (persistence/billing.py), so SQLite sums the spans
    # from the index alone instead of visiting each row.
    Index(
        "ix_licenses_partner_id_billed_days",
        "partner_id",
        "first_billed_day",
        "last_billed_day",
        "product_slug",
        "state",
        "site",
        "key",
        "id",
    ),
)
license_transfers = Table(
    "license_transfers",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("license_id", String(32), ForeignKey("licenses.id"), nullable=False),
    Column("from_partner_id", String(32), ForeignKey("partners.id"), nullable=False),
    # Only a SHA-256 of the one-time code is stored; the code itself is shown once.
    Column("code_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("expires_at", UTCDateTime(), nullable=False),
    Column("status", String(16), nullable=False),  # pending | accepted | cancelled
    Column("accepted_by_partner_id", String(32), ForeignKey("partners.id"), nullable=True),
    Column("accepted_at", UTCDateTime(), nullable=True),
    Index(
        "uq_license_transfers_pending_license",
        "license_id",
        unique=True,
        sqlite_where=text("status = 'pending'"),
        postgresql_where=text("status = 'pending'"),
    ),
)

# Licenses without the instant a list is ordered by go last, whichever the direction.
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9999, 12, 31, tzinfo=UTC)
_ORDER_COLUMNS = {
    LicenseOrderField.ISSUED_AT: licenses.c.issued_at,
    LicenseOrderField.ASSIGNED_AT: licenses.c.assigned_at,
    LicenseOrderField.REVOKED_AT: licenses.c.revoked_at,
}


class LicenseRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection
        self._zones: dict[str, str] = {}  # partner id -> billing zone, for the billed-day spans

    async def add_many(self, holdings: Sequence[License]) -> None:
        """Insert new holdings in one statement (their version becomes 1)."""
        if not holdings:
            return
        for holding in holdings:
            holding.version = 1
        await self._guarded(
            licenses.insert(),
            [_to_row(holding, await self._zone_of(holding.partner_id)) for holding in holdings],
        )

    async def held_by(self, partner_id: str, key: str, *, for_update: bool = False) -> License | None:
        """The partner's current holding of `key` (its latest one); None when it never held the key."""
        statement = _latest_holding(licenses.c.partner_id == partner_id, licenses.c.key == key)
        row = (await self._connection.execute(self._locking(statement, for_update))).one_or_none()
        return None if row is None else _to_license(row)

    async def current(self, key: str) -> License | None:
        """Whoever holds `key` now (its live holding, else its latest); None for a key never issued."""
        row = (await self._connection.execute(_latest_holding(licenses.c.key == key))).one_or_none()
        return None if row is None else _to_license(row)

    async def live(
        self, partner_id: str, *, for_update: bool = False, limit: int | None = None
    ) -> list[License]:
        """The partner's issued and assigned holdings, oldest first (the first `limit` of them)."""
        statement = (
            select(licenses)
            .where(
                licenses.c.partner_id == partner_id,
                licenses.c.state.in_([s.value for s in LIVE_STATES]),
            )
            .order_by(licenses.c.held_from, licenses.c.id)
            .limit(limit)
        )
        rows = await self._connection.execute(self._locking(statement, for_update))
        return [_to_license(row) for row in rows]

    async def get(self, license_id: str, *, for_update: bool = False) -> License | None:
        statement = select(licenses).where(licenses.c.id == license_id)
        row = (await self._connection.execute(self._locking(statement, for_update))).one_or_none()
        return None if row is None else _to_license(row)

    async def get_many(self, license_ids: Sequence[str]) -> list[License]:
        """Holdings by id, in the order asked."""
        rows = await self._connection.execute(select(licenses).where(licenses.c.id.in_(list(license_ids))))
        found = {row.id: _to_license(row) for row in rows}
        return [found[license_id] for license_id in license_ids if license_id in found]

    async def on_site(self, product_slug: str, site: str) -> License | None:
        """The license of this product assigned to `site`, whoever holds it."""
        row = (
            await self._connection.execute(
                select(licenses).where(
                    licenses.c.product_slug == product_slug,
                    licenses.c.site == site,
                    licenses.c.state == "assigned",
                )
            )
        ).one_or_none()
        return None if row is None else _to_license(row)

    async def save(self, holding: License) -> None:
        """Write a holding the state machine changed; CONFLICT when someone else changed it first."""
        values = _to_row(holding, await self._zone_of(holding.partner_id))
        values["version"] = holding.version + 1
        result = await self._guarded(
            update(licenses).where(licenses.c.id == holding.id, licenses.c.version == holding.version),
            values,
        )
        if result.rowcount != 1:
            raise DomainError(
                ErrorCode.CONFLICT, f"License {holding.key} was changed by another request; try again."
            )
        holding.version += 1

    async def page(
        self,
        partner_id: str,
        *,
        where: LicenseFilter,
        order: LicenseOrder,
        first: int | None,
        after: str | None,
        count_total: bool = True,
    ) -> Page[License]:
        conditions = _conditions(where)
        statement, sort = _listing(order)
        if conditions:
            statement = statement.where(*conditions)
        return await keyset_page(
            self._connection,
            statement,
            sort,
            first=first,
            after=after,
            to_item=_to_license,
            cursor_values=_cursor_values,
            count_total=count_total,
            # Unfiltered lists (the usual page) are one shape per order: their statements are built once.
            shape=None if conditions else ("licenses", order),
            parameters={"partner_id": partner_id},
        )

    async def _zone_of(self, partner_id: str) -> str:
        zone = self._zones.get(partner_id)
        if zone is None:
            found = await self._connection.execute(
                select(partners.c.billing_zone).where(partners.c.id == partner_id)
            )
            zone = self._zones[partner_id] = found.scalar_one()
        return zone

    async def has_held_any(self, partner_id: str) -> bool:
        """Whether the partner has ever held a license (issued or received)."""
        found = await self._connection.execute(
            select(licenses.c.id).where(licenses.c.partner_id == partner_id).limit(1)
        )
        return found.first() is not None

    async def counts_by_state(self, partner_id: str) -> dict[str, int]:
        rows = await self._connection.execute(
            select(licenses.c.state, func.count().label("holdings"))
            .where(licenses.c.partner_id == partner_id)
            .group_by(licenses.c.state)
        )
        return {row.state: int(row.holdings) for row in rows}

    def _locking(self, statement: Any, for_update: bool) -> Any:
        # SQLite writers already hold the database's write lock (BEGIN IMMEDIATE).
        if for_update and self._connection.dialect.name != "sqlite":
            return statement.with_for_update()
        return statement

    async def _guarded(self, statement: Any, values: Any) -> Any:
        """Run a write; a clash on the one-license-per-site index becomes SITE_TAKEN."""
        # No savepoint: the refusal rolls the whole unit of work back anyway.
        try:
            return await self._connection.execute(statement, values)
        except IntegrityError as error:
            if _violates(error, "uq_licenses_product_site", "licenses.product_slug, licenses.site"):
                raise DomainError(
                    ErrorCode.SITE_TAKEN,
                    "Another active license of this product is already assigned to that site.",
                    "site",
                ) from error
            if _violates(error, "uq_licenses_live_key", "licenses.key"):
                raise DomainError(
                    ErrorCode.CONFLICT, "This license key was changed by another request; try again."
                ) from error
            raise


class TransferRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def add(self, transfer: Transfer) -> None:
        await self._connection.execute(license_transfers.insert().values(**transfer.__dict__))

    async def by_code_hash(self, code_hash: str, *, for_update: bool = False) -> Transfer | None:
        statement = select(license_transfers).where(license_transfers.c.code_hash == code_hash)
        if for_update and self._connection.dialect.name != "sqlite":
            statement = statement.with_for_update()
        row = (await self._connection.execute(statement)).one_or_none()
        return None if row is None else Transfer(**row._mapping)

    async def get(self, transfer_id: str) -> Transfer | None:
        row = (
            await self._connection.execute(
                select(license_transfers).where(license_transfers.c.id == transfer_id)
            )
        ).one_or_none()
        return None if row is None else Transfer(**row._mapping)

    async def pending_for(self, license_id: str) -> Transfer | None:
        return (await self.pending_for_many([license_id])).get(license_id)

    async def pending_for_many(self, license_ids: Sequence[str]) -> dict[str, Transfer]:
        """The pending transfer of each license that has one (at most one each), in one statement."""
        rows = await self._connection.execute(
            select(license_transfers).where(
                license_transfers.c.license_id.in_(list(license_ids)), license_transfers.c.status == "pending"
            )
        )
        return {row.license_id: Transfer(**row._mapping) for row in rows}

    async def save(self, transfer: Transfer) -> None:
        await self._connection.execute(
            update(license_transfers)
            .where(license_transfers.c.id == transfer.id)
            .values(
                status=transfer.status,
                accepted_by_partner_id=transfer.accepted_by_partner_id,
                accepted_at=transfer.accepted_at,
            )
        )


@cache
def _listing(order: LicenseOrder) -> tuple[Select[Any], SortKey]:
    """A partner's licenses (`partner_id` bound at execution) in `order`, with the order's sort key."""
    column = _ORDER_COLUMNS[order.field]
    missing_last = _EARLIEST if order.descending else _LATEST
    sort_value: ColumnElement[Any] = (
        column if not column.nullable else func.coalesce(column, literal(missing_last, UTCDateTime()))
    )
    statement = select(licenses, sort_value.label("sort_value")).where(
        licenses.c.partner_id == bindparam("partner_id")
    )
    # A cursor names the order it was taken in: one from another order is refused, not misread.
    direction = "desc" if order.descending else "asc"
    cursor = CursorCodec(f"licenses/{order.field.value}/{direction}", [cursor_instant, cursor_key])
    return statement, SortKey(columns=[sort_value, licenses.c.id], cursor=cursor, descending=order.descending)


def _latest_holding(*conditions: ColumnElement[bool]) -> Any:
    return (
        select(licenses)
        .where(*conditions)
        # A live holding first: a key can come back to a partner that transferred it away.
        .order_by(
            case((licenses.c.state.in_([s.value for s in LIVE_STATES]), 0), else_=1),
            licenses.c.held_from.desc(),
            licenses.c.id.desc(),
        )
        .limit(1)
    )


def _conditions(where: LicenseFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if where.states:
        conditions.append(licenses.c.state.in_([state.value for state in where.states]))
    if where.product_slugs:
        conditions.append(licenses.c.product_slug.in_(list(where.product_slugs)))
    if where.search:
        term = where.search
        named = select(products.c.slug).where(products.c.name.icontains(term, autoescape=True))
        conditions.append(
            or_(
                licenses.c.key.icontains(term, autoescape=True),
                licenses.c.site.icontains(term, autoescape=True),
                licenses.c.product_slug.in_(named),
            )
        )
    return conditions


def _violates(error: IntegrityError, constraint: str, sqlite_columns: str) -> bool:
    message = str(error.orig)
    return constraint in message or sqlite_columns in message


def _span_columns(
    held_from: datetime | None, held_until: datetime | None, state: str | None, zone: str
) -> dict[str, int | None]:
    """The holding's billed days (the day rule, domain.billing.billable_span) as stored columns."""
    if held_from is None:
        raise ValueError("a stored holding has a held_from instant")
    span = billable_span(held_from, held_until, state == LicenseState.TRANSFERRED, zone)
    return {"first_billed_day": span.first, "last_billed_day": span.last}


def _to_row(holding: License, zone: str) -> dict[str, Any]:
    return {
        **_span_columns(holding.held_from, holding.held_until, holding.state, zone),
        "id": holding.id,
        "key": holding.key,
        "partner_id": holding.partner_id,
        "product_slug": holding.product_slug,
        "state": holding.state,
        "site": holding.site,
        "held_from": holding.held_from,
        "held_until": holding.held_until,
        "issued_at": holding.issued_at,
        "assigned_at": holding.assigned_at,
        "revoked_at": holding.revoked_at,
        "transferred_at": holding.transferred_at,
        "version": holding.version,
    }


def _cursor_values(row: Sequence[Any]) -> list[Any]:
    """A listed row's sort value (the column after the table's) and id (its first), by position."""
    return [row[_SORT_VALUE], row[0]]


def _to_license(row: Sequence[Any]) -> License:
    # By position (the table's first columns are License's fields, in order: checked below): a page
    # builds 100 of these, and reading a Row by name costs several times more.
    return License(*row[:_LICENSE_FIELD_COUNT])


_LICENSE_FIELD_COUNT = len(fields(License))
_SORT_VALUE = len(licenses.columns)
if [column.name for column in licenses.columns][:_LICENSE_FIELD_COUNT] != [f.name for f in fields(License)]:
    raise TypeError("the licenses table must begin with License's fields, in their order")
