"""What billing reads: a partner's license holdings that touch a month, and the prices to apply; and the
month's estimate as SQL sums over the holdings' stored billed-day spans (`licenses.first_billed_day`,
`last_billed_day`, written with the day rule `domain.billing.billable_span`).

The spans are clipped to the month (GREATEST/LEAST of day numbers) and counted by (product, first day,
last day), all and on a site: `domain.billing.sum_month` splits the counts at the month's price changes,
prices them and plans the largest-remainder allocation. That one statement answers the lines and the
total; two more, each through an index, answer the parts a reader asks for (`StatementParts`): the keys
held twice (license counts), and, for the lines whose allocation has a cut, how many of the first
day-lines at the cut (by key, then holding, as `allocate_largest_remainder` ranks them) are on a site
(the assigned/unassigned split). Day-line pages rank in SQL (ROW_NUMBER) with the same allocation."""

from __future__ import annotations

import functools
import operator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    CTE,
    BigInteger,
    ColumnElement,
    Index,
    Integer,
    Select,
    String,
    and_,
    bindparam,
    case,
    column,
    false,
    func,
    literal_column,
    or_,
    select,
    values,
)
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import GenericFunction

from domain.billing import (
    BillingMonth,
    DayLine,
    HeldAgain,
    Holding,
    MonthSums,
    PriceBook,
    SpanGroup,
    StatementParts,
    sum_month,
)
from domain.products import ProductPrice
from persistence.licenses import licenses
from persistence.products import product_prices
from persistence.sqlite_connections import PreparedRead

TRANSFERRED = "transferred"

# The indexes the estimate reads through besides `ix_licenses_partner_id_billed_days` (persistence/
# licenses.py; migration 0013_estimate): the month's transferred holdings, a short range instead of a
# pass over the month, to find the keys held twice; and each product's holdings in key order, so the
# contested cents of a line are ranked by walking the index (bytewise on PostgreSQL, as Python
# compares keys) instead of sorting the month.
TRANSFERRED_DAYS_INDEX = Index(
    "ix_licenses_partner_id_transferred_days",
    licenses.c.partner_id,
    licenses.c.state,
    licenses.c.last_billed_day,
    licenses.c.first_billed_day,
    licenses.c.product_slug,
    licenses.c.key,
)
PRODUCT_KEY_INDEX = Index(
    "ix_licenses_partner_id_product_key",
    licenses.c.partner_id,
    licenses.c.product_slug,
    licenses.c.key,
    licenses.c.id,
    licenses.c.first_billed_day,
    licenses.c.last_billed_day,
    licenses.c.site,
    postgresql_ops={"key": 'COLLATE "C"', "id": 'COLLATE "C"'},
)


PRICES_IN_CURRENCY = PreparedRead(
    select(
        product_prices.c.product_slug,
        product_prices.c.currency,
        product_prices.c.effective_from,
        product_prices.c.daily_price_micros,
    ).where(product_prices.c.currency == bindparam("currency", type_=String))
)


class BillingReader:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def holdings(self, partner_id: str, start: datetime, end: datetime) -> list[Holding]:
        """Holdings held at some instant of [start, end): one row each, in one statement.

        Plain Core rows, converted straight into `Holding`s: no ORM object per license or per day.
        """
        table = licenses.c
        # The instants bypass the column type's per-value processing (the hot cost at 100k rows):
        # SQLite hands back its UTC text, PostgreSQL an aware datetime; `_instant` normalizes both.
        result = await self._connection.execute(
            select(
                table.id,
                table.key,
                table.product_slug,
                table.site,
                raw_instant(table.held_from),
                raw_instant(table.held_until),
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

    async def price_book(self, currency: str) -> PriceBook:
        """Every product's dated prices in `currency`."""
        rows = await PRICES_IN_CURRENCY.rows(self._connection, {"currency": currency})
        return PriceBook(currency, (ProductPrice(*row) for row in rows))

    async def month_sums(
        self,
        partner_id: str,
        book: PriceBook,
        month: BillingMonth,
        zone: str,
        currency_exponent: int,
        parts: StatementParts = StatementParts.ALL,
    ) -> MonthSums:
        """The month's lines and total, summed in SQL over the partner's billed-day spans, with the
        `parts` asked for (no day-lines: `day_lines` pages them with the sums' allocation)."""
        parameters = _month_parameters(partner_id, month)
        dialect = self._connection.dialect.name
        groups = [
            SpanGroup(slug, first, last, holdings, on_site)
            for slug, first, last, holdings, on_site in await _span_groups(dialect).rows(
                self._connection, parameters
            )
        ]
        held_again = None
        if StatementParts.COUNTS in parts:
            held_again = [
                HeldAgain(row[0], row[1], row[2], bool(row[3]), _instant(row[4]), row[5], row[6])
                for row in await _held_again(dialect).rows(self._connection, parameters)
            ]
        sums = sum_month(groups, held_again, book, month, zone, currency_exponent)
        if StatementParts.COST_SPLIT in parts:
            sums = replace(sums, assigned_at_cut=await self._assigned_at_cut(partner_id, sums))
        return sums

    async def _assigned_at_cut(self, partner_id: str, sums: MonthSums) -> dict[tuple[str, int], int]:
        """Per cut line, how many of the first `cut_units` day-lines at its cut are on a site."""
        cut = sums.cut_lines()
        if not cut:
            return {}
        shape, parameters = _cut_parameters(partner_id, sums)
        statement = _assigned_at_cut(self._connection.dialect.name, shape)
        (row,) = await statement.rows(self._connection, parameters)
        return {
            (plan.product_slug, plan.daily_price_micros): int(count)
            for plan, count in zip(cut, row, strict=True)
        }

    async def day_lines(
        self, partner_id: str, book: PriceBook, sums: MonthSums, *, offset: int, limit: int
    ) -> list[DayLine]:
        """Day-lines at positions [offset, offset + limit) of the statement's order (product, key,
        holding, line), with the amounts `sums` allocates to them."""
        plans = {(plan.product_slug, plan.daily_price_micros): plan for plan in sums.lines}
        if not plans:
            return []
        lines = _holding_lines(partner_id, book, sums.month)
        c = lines.c
        line_order = case(
            *(
                (and_(c.product_slug == slug, c.price == price), position)
                for position, (slug, price) in enumerate(plans)
            ),
            else_=len(plans),
        )
        at_cut = _at_cut(lines, sums)
        by_key = [self._bytewise(c.key), self._bytewise(c.id)]
        rank = func.row_number().over(partition_by=[c.product_slug, c.price, at_cut], order_by=by_key)
        rows = await self._connection.execute(
            select(c.id, c.key, c.product_slug, c.site, c.days, c.price, rank)
            .order_by(self._bytewise(c.product_slug), *by_key, line_order)
            .offset(offset)
            .limit(limit)
        )
        return [
            DayLine(
                holding_id, key, slug, site, days, plans[slug, price].allocation.amount(days, rank), price
            )
            for holding_id, key, slug, site, days, price, rank in rows
        ]

    def _bytewise(self, column: ColumnElement[str]) -> ColumnElement[str]:
        return _bytewise(column, self._connection.dialect.name)

    async def day_line_count(self, partner_id: str, book: PriceBook, month: BillingMonth) -> int:
        lines = _holding_lines(partner_id, book, month)
        return int((await self._connection.execute(select(func.count()).select_from(lines))).scalar_one())


class greatest(GenericFunction[int]):
    """GREATEST of integers (SQLite: the scalar MAX)."""

    type = Integer()
    inherit_cache = True


class least(GenericFunction[int]):
    """LEAST of integers (SQLite: the scalar MIN)."""

    type = Integer()
    inherit_cache = True


@compiles(greatest, "sqlite")
def _sqlite_greatest(element: greatest, compiler: SQLCompiler, **kw: Any) -> str:
    return f"max({compiler.process(element.clauses, **kw)})"


@compiles(least, "sqlite")
def _sqlite_least(element: least, compiler: SQLCompiler, **kw: Any) -> str:
    return f"min({compiler.process(element.clauses, **kw)})"


# The estimate's statements are built once, with the partner and the month's first and last
# day numbers as bound parameters: for a partner of a few hundred licenses, building a statement and
# its cache key anew cost SQLAlchemy more than the database took to run it.
PARTNER = bindparam("partner_id", type_=String)
MONTH_FIRST = bindparam("month_first", type_=Integer)
MONTH_LAST = bindparam("month_last", type_=Integer)


def _month_parameters(partner_id: str, month: BillingMonth) -> dict[str, Any]:
    first, last = _month_days(month)
    return {"partner_id": partner_id, "month_first": first, "month_last": last}


def _month_days(month: BillingMonth) -> tuple[int, int]:
    """The month's first and last day numbers."""
    first = month.first_day.toordinal()
    return first, first + month.days - 1


def _clipped_span(
    table: Any, first: int | ColumnElement[int], last: int | ColumnElement[int]
) -> tuple[ColumnElement[int], ColumnElement[int], list[ColumnElement[bool]]]:
    """A holding's billed days clipped to the month's days first..last (lo..hi, day numbers), and the
    conditions for it to have any: `table` is `licenses` or an alias of it."""
    c = table.c
    until = func.coalesce(c.last_billed_day, last)
    lo, hi = greatest(c.first_billed_day, first), least(until, last)
    return lo, hi, [c.first_billed_day <= last, until >= first, until >= c.first_billed_day]


def _spans(partner_id: str, month: BillingMonth) -> Select[Any]:
    """The partner's holdings with a billed day in the month, their spans clipped to it (lo..hi)."""
    c = licenses.c
    lo, hi, billed = _clipped_span(licenses, *_month_days(month))
    return select(
        c.id,
        c.key,
        c.product_slug,
        c.site,
        c.state,
        raw_instant(c.held_from).label("held_from"),
        lo.label("lo"),
        hi.label("hi"),
    ).where(c.partner_id == partner_id, *billed)


@functools.cache  # built once per dialect: each counts the way its database does it fastest
def _span_groups(dialect: str) -> PreparedRead:
    """The month's holdings counted by (product, first and last billed day in the month): all, and
    those on a site.

    PostgreSQL hashes each holding straight into its span clipped to the month. SQLite would sort the
    month's holdings for that, so it counts twice over: by the stored (first, last, product), in the
    order of `ix_licenses_partner_id_billed_days`, so that it counts while it walks the index; then
    those counts by their clipped spans (a sort of a few thousand rows)."""
    c = licenses.c
    lo, hi, billed = _clipped_span(licenses, MONTH_FIRST, MONTH_LAST)
    if dialect == "postgresql":
        group = [c.product_slug, lo - MONTH_FIRST, hi - MONTH_FIRST]
        return PreparedRead(
            select(*group, func.count(), func.count(c.site))
            .where(c.partner_id == PARTNER, *billed)
            .group_by(*group)
        )
    stored = (
        select(
            c.first_billed_day,
            c.last_billed_day,
            c.product_slug,
            func.count().label("holdings"),
            func.count(c.site).label("on_site"),
        )
        .where(c.partner_id == PARTNER, *billed)
        .group_by(c.first_billed_day, c.last_billed_day, c.product_slug)
        .subquery("stored_spans")
    )
    lo, hi, _ = _clipped_span(stored, MONTH_FIRST, MONTH_LAST)
    group = [stored.c.product_slug, lo - MONTH_FIRST, hi - MONTH_FIRST]
    return PreparedRead(
        select(*group, func.sum(stored.c.holdings), func.sum(stored.c.on_site)).group_by(*group)
    )


def _bytewise(column: ColumnElement[str], dialect: str) -> ColumnElement[str]:
    """Order and compare text as Python does (by code point): PostgreSQL's default collation may not."""
    return column.collate("C") if dialect == "postgresql" else column


@functools.cache  # built once per dialect: PostgreSQL compares keys in the "C" collation
def _held_again(dialect: str) -> PreparedRead:
    """The holdings of keys the partner held twice in the month (the earlier one left by transfer
    within it). The month's transferred holdings are a short range of
    `ix_licenses_partner_id_transferred_days`; each of their keys is counted in
    `ix_licenses_partner_id_product_key` (the index alone); only keys billed twice are read in full."""
    left, of_key = licenses.alias("left_by_transfer"), licenses.alias("holdings_of_key")
    _, _, left_billed = _clipped_span(left, MONTH_FIRST, MONTH_LAST)
    # `last_billed_day >= first` again without COALESCE (a transferred holding has one), so that it
    # bounds the index range.
    keys = (
        select(left.c.product_slug, left.c.key)
        .where(
            left.c.partner_id == PARTNER,
            left.c.state == TRANSFERRED,
            left.c.last_billed_day >= MONTH_FIRST,
            *left_billed,
        )
        .distinct()
        .subquery("keys_left_by_transfer")
    )
    key_lo, key_hi, _ = _clipped_span(of_key, MONTH_FIRST, MONTH_LAST)
    twice = (
        select(of_key.c.key)
        .select_from(
            keys.join(
                of_key,
                and_(
                    of_key.c.partner_id == PARTNER,
                    of_key.c.product_slug == keys.c.product_slug,
                    # In the index's collation (on PostgreSQL), so that the index answers.
                    _bytewise(of_key.c.key, dialect) == keys.c.key,
                ),
            )
        )
        # Billed in the month (the same as `_clipped_span`'s conditions), in a form no index serves:
        # the holdings are found by their key.
        .where(key_lo <= key_hi)
        .group_by(of_key.c.key)
        .having(func.count() > 1)
    )
    c = licenses.c
    lo, hi, _ = _clipped_span(licenses, MONTH_FIRST, MONTH_LAST)
    return PreparedRead(
        select(
            c.id,
            c.key,
            c.product_slug,
            c.site.is_not(None),
            raw_instant(c.held_from),
            lo - MONTH_FIRST,
            hi - MONTH_FIRST,
        ).where(c.partner_id == PARTNER, c.key.in_(twice), lo <= hi)
    )


def _price_periods(book: PriceBook, month: BillingMonth) -> tuple[CTE, bool]:
    """The month's price periods of every product priced in the currency, as day numbers (a VALUES
    list), and whether a product comes back to a price it had (then a holding's days at that price are
    added up into one day-line)."""
    month_first = month.first_day.toordinal()
    # A row no holding matches keeps the list non-empty when nothing is priced in the currency.
    rows: list[tuple[str, int, int, int | None]] = [("", 0, 0, None)]
    repeats = False
    for slug in book.product_slugs:
        periods = book.periods(slug, month)
        prices = [period.daily_price_micros for period in periods]
        repeats = repeats or len(set(prices)) < len(prices)
        rows.extend(
            (slug, month_first + period.first, month_first + period.last - 1, period.daily_price_micros)
            for period in periods
        )
    table = values(
        column("product_slug", String),
        column("first_day", Integer),
        column("last_day", Integer),
        column("price", BigInteger),
        name="price_periods",
    ).data(rows)
    return table.cte("price_periods"), repeats


def _holding_lines(partner_id: str, book: PriceBook, month: BillingMonth) -> Any:
    """One row per (holding, daily price) billed in the month: its days at that price and its first."""
    spans = _spans(partner_id, month).cte("spans")
    periods, repeats = _price_periods(book, month)
    # A product with no price at all in the currency matches no period: its days are unpriced (NULL).
    start = greatest(spans.c.lo, func.coalesce(periods.c.first_day, spans.c.lo))
    days = least(spans.c.hi, func.coalesce(periods.c.last_day, spans.c.hi)) - start + 1
    pieces = select(
        spans.c.id,
        spans.c.key,
        spans.c.product_slug,
        spans.c.site,
        spans.c.held_from,
        periods.c.price,
        days.label("days"),
        start.label("start"),
    ).select_from(
        spans.outerjoin(
            periods,
            and_(
                periods.c.product_slug == spans.c.product_slug,
                periods.c.first_day <= spans.c.hi,
                periods.c.last_day >= spans.c.lo,
            ),
        )
    )
    if not repeats:
        return pieces.cte("holding_lines")
    piece = pieces.subquery("pieces")
    keys = [piece.c.id, piece.c.key, piece.c.product_slug, piece.c.site, piece.c.held_from, piece.c.price]
    return (
        select(*keys, func.sum(piece.c.days).label("days"), func.min(piece.c.start).label("start"))
        .group_by(*keys)
        .cte("holding_lines")
    )


def _at_cut(lines: Any, sums: MonthSums) -> ColumnElement[bool]:
    """Whether a day-line is among those its line ranks for the last units (its days are at the cut)."""
    c = lines.c
    conditions = [
        and_(
            c.product_slug == plan.product_slug,
            c.price == plan.daily_price_micros,
            c.days.in_(sorted(plan.allocation.cut_weights)),
        )
        for plan in sums.cut_lines()
    ]
    return or_(false(), *conditions)


@functools.cache  # built once per dialect and shape (the number of periods of each cut line's price)
def _assigned_at_cut(dialect: str, periods_per_line: tuple[int, ...]) -> PreparedRead:
    """One row: per cut line n (in `sums.cut_lines()` order; its product, price periods, cut weights
    and units bound by `_cut_parameters`), how many of its first `units_n` day-lines at the cut,
    ranked by key then holding, are on a site.

    A day-line is at the cut when its days at the line's price (its span's overlap with the price's
    periods) are a cut weight: bit `days` of the bound `weights_n` mask. Each line walks
    `ix_licenses_partner_id_product_key` in key order and stops after its units' day-lines at the cut:
    no sort, and no window over the month."""
    c = licenses.c
    lo, hi, billed = _clipped_span(licenses, MONTH_FIRST, MONTH_LAST)
    counts = []
    for n, periods in enumerate(periods_per_line):
        days = _days_in_periods(lo, hi, [f"{n}_{k}" for k in range(periods)])
        weights = bindparam(f"weights_{n}", type_=BigInteger)
        at_cut = (
            select(c.site)
            .where(
                c.partner_id == PARTNER,
                c.product_slug == bindparam(f"product_{n}", type_=String),
                *billed,
                weights.op(">>")(days).op("&")(1) == 1,
            )
            .order_by(_bytewise(c.key, dialect), _bytewise(c.id, dialect))
            .limit(bindparam(f"units_{n}", type_=Integer))
            .subquery()
        )
        counts.append(select(func.count(at_cut.c.site)).scalar_subquery())
    return PreparedRead(select(*counts))


def _days_in_periods(
    lo: ColumnElement[int], hi: ColumnElement[int], periods: list[str]
) -> ColumnElement[int]:
    """The days of lo..hi inside the bound periods `period_first_<p>`..`period_last_<p>` (day numbers)."""
    overlaps = [
        greatest(
            least(hi, bindparam(f"period_last_{period}", type_=Integer))
            - greatest(lo, bindparam(f"period_first_{period}", type_=Integer))
            + 1,
            0,
        )
        for period in periods
    ]
    return functools.reduce(operator.add, overlaps)


def _cut_parameters(partner_id: str, sums: MonthSums) -> tuple[tuple[int, ...], dict[str, Any]]:
    """`_assigned_at_cut`'s shape and parameters for the month's cut lines."""
    parameters = _month_parameters(partner_id, sums.month)
    month_first = parameters["month_first"]
    shape = []
    for n, plan in enumerate(sums.cut_lines()):
        parameters[f"product_{n}"] = plan.product_slug
        parameters[f"weights_{n}"] = sum(1 << weight for weight in plan.allocation.cut_weights)
        parameters[f"units_{n}"] = plan.allocation.cut_units
        periods = sums.price_periods(plan)
        for k, (first, last) in enumerate(periods):
            parameters[f"period_first_{n}_{k}"] = month_first + first
            parameters[f"period_last_{n}_{k}"] = month_first + last
        shape.append(len(periods))
    return tuple(shape), parameters


def raw_instant(column: ColumnElement[datetime]) -> ColumnElement[str]:
    """The column as the driver returns it, without the column type's per-value processing."""
    return literal_column(f"{licenses.name}.{column.key}", String)


def _instant(value: str | datetime) -> datetime:
    if isinstance(value, str):
        # SQLite's naive UTC text; parsing with the offset is 7x faster than parse-then-replace.
        return datetime.fromisoformat(value + "+00:00")
    return value if value.tzinfo is UTC else value.astimezone(UTC)
