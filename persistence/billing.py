"""What billing reads: a partner's license holdings that touch a month, and the prices to apply; and the
month's estimate as SQL sums over the holdings' stored billed-day spans (`licenses.first_billed_day`,
`last_billed_day`, written with the day rule `domain.billing.billable_span`).

The spans are clipped to the month (GREATEST/LEAST of day numbers), split at the month's price changes,
and grouped by (product, daily price, days, assigned): `domain.billing.sum_month` prices the groups and
plans the largest-remainder allocation, and only the lines whose allocation has a cut are ranked in SQL
(ROW_NUMBER by key, then holding), as `allocate_largest_remainder` ranks them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    CTE,
    BigInteger,
    ColumnElement,
    Integer,
    Select,
    String,
    and_,
    case,
    column,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    tuple_,
    union_all,
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
    Statement,
    sum_month,
)
from domain.products import ProductPrice
from persistence.licenses import licenses
from persistence.products import product_prices

TRANSFERRED = "transferred"


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
        rows = await self._connection.execute(
            select(
                product_prices.c.product_slug,
                product_prices.c.currency,
                product_prices.c.effective_from,
                product_prices.c.daily_price_micros,
            ).where(product_prices.c.currency == currency)
        )
        return PriceBook(currency, (ProductPrice(*row) for row in rows))

    async def month_sums(
        self, partner_id: str, book: PriceBook, month: BillingMonth, zone: str, currency_exponent: int
    ) -> tuple[MonthSums, Statement]:
        """The month's lines, counts and costs, summed in SQL over the partner's billed-day spans (the
        statement has no day-lines; `day_lines` pages them with the sums' allocation)."""
        spans = _spans(partner_id, month).cte("spans")
        month_first = month.first_day.toordinal()
        c = spans.c
        assigned = c.site.is_not(None)
        group = [c.product_slug, c.lo - month_first, c.hi - month_first, assigned]
        groups = [
            SpanGroup(row[0], row[1], row[2], bool(row[3]), row[4])
            for row in await self._connection.execute(select(*group, func.count()).group_by(*group))
        ]
        # Keys held twice in the month: the earlier holding left by transfer within the month.
        again = select(c.key).where(c.state == TRANSFERRED).scalar_subquery()
        held_again = [
            HeldAgain(row[0], row[1], row[2], bool(row[3]), _instant(row[4]), row[5], row[6])
            for row in await self._connection.execute(
                select(c.id, c.key, c.product_slug, assigned, c.held_from, *group[1:3]).where(
                    c.key.in_(again)
                )
            )
        ]
        sums = sum_month(groups, held_again, book, month, zone, currency_exponent)
        assigned_at_cut: dict[tuple[str, int], int] = {}
        if sums.cut_lines():
            rows = await self._connection.execute(_assigned_at_cut(spans, sums, self._bytewise))
            cut = sums.cut_lines()
            assigned_at_cut = {
                (cut[line].line.product_slug, cut[line].line.daily_price_micros): int(count)
                for line, count in rows
            }
        return sums, sums.statement(assigned_at_cut)

    async def day_lines(
        self, partner_id: str, book: PriceBook, sums: MonthSums, *, offset: int, limit: int
    ) -> list[DayLine]:
        """Day-lines at positions [offset, offset + limit) of the statement's order (product, key,
        holding, line), with the amounts `sums` allocates to them."""
        plans = {(plan.line.product_slug, plan.line.daily_price_micros): plan for plan in sums.lines}
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
        """Order text as Python does (by code point): PostgreSQL's default collation may not."""
        return column.collate("C") if self._connection.dialect.name == "postgresql" else column

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


def _spans(partner_id: str, month: BillingMonth) -> Select[Any]:
    """The partner's holdings with a billed day in the month, their spans clipped to it (lo..hi)."""
    first, last = month.first_day.toordinal(), month.first_day.toordinal() + month.days - 1
    c = licenses.c
    until = func.coalesce(c.last_billed_day, last)
    return select(
        c.id,
        c.key,
        c.product_slug,
        c.site,
        c.state,
        raw_instant(c.held_from).label("held_from"),
        greatest(c.first_billed_day, first).label("lo"),
        least(until, last).label("hi"),
    ).where(
        c.partner_id == partner_id,
        c.first_billed_day <= last,
        until >= first,
        until >= c.first_billed_day,
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
            c.product_slug == plan.line.product_slug,
            c.price == plan.line.daily_price_micros,
            c.days.in_(sorted(plan.allocation.cut_weights)),
        )
        for plan in sums.cut_lines()
    ]
    return or_(false(), *conditions)


def _assigned_at_cut(
    spans: CTE, sums: MonthSums, bytewise: Callable[[ColumnElement[str]], ColumnElement[str]]
) -> Select[Any]:
    """Per cut line (by its index in `sums.cut_lines()`): how many of its first `cut_units` day-lines
    at the cut, ranked by key then holding, are on a site."""
    c = spans.c
    month_first = sums.month.first_day.toordinal()
    cut = sums.cut_lines()
    ranked = union_all(
        *(
            select(
                literal(index, Integer).label("line"),
                c.site.is_not(None).label("assigned"),
                func.row_number().over(order_by=[bytewise(c.key), bytewise(c.id)]).label("rank"),
            ).where(
                c.product_slug == plan.line.product_slug,
                tuple_(c.lo, c.hi).in_(
                    [(month_first + first, month_first + last) for first, last in sums.spans_at_cut(plan)]
                ),
            )
            for index, plan in enumerate(cut)
        )
    ).subquery("ranked")
    r = ranked.c
    units = case(*((r.line == index, plan.allocation.cut_units) for index, plan in enumerate(cut)), else_=0)
    return select(r.line, func.count()).where(r.assigned, r.rank <= units).group_by(r.line)


def raw_instant(column: ColumnElement[datetime]) -> ColumnElement[str]:
    """The column as the driver returns it, without the column type's per-value processing."""
    return literal_column(f"{licenses.name}.{column.key}", String)


def _instant(value: str | datetime) -> datetime:
    if isinstance(value, str):
        # SQLite's naive UTC text; parsing with the offset is 7x faster than parse-then-replace.
        return datetime.fromisoformat(value + "+00:00")
    return value if value.tzinfo is UTC else value.astimezone(UTC)
