"""Per-day billing: count license-days in a partner's billing month, price them, build the statement.

The day rule (docs/rules.md, "The day rule"), exactly as implemented here. A holding is one partner's
tenure of a license key, from `held_from` (issue, or transfer acceptance for the receiver) to
`held_until` (revoke or transfer out; None while active). Calendar days are the partner's zone's days;
a day is the half-open interval [local midnight, next local midnight), found by DST-safe conversion of
each local midnight to UTC.

- A holding is billed on every calendar day from the day of `held_from` to the day of `held_until`,
  both included: the issue day and the revoke day count, and issue + revoke on one day is 1 day.
- A holding that ended by transfer is not billed on the transfer day: its last billed day is the day
  before. The receiver's holding starts at that instant, so the receiver is billed for that day.
- A holding still active (`held_until` None) is billed through the end of the month. That is also the
  current-month estimate: days to the month's end for licenses still active.

So along one key's chain of holdings, each day goes to whoever holds the key at the end of that day, or
to the holder who revoked it that day. A → B → A within one day bills the day once, to the last A; a
holding issued and transferred out the same day gets 0 days. Within one zone no day is billed twice.

Prices are dated: a license-day is priced by the product's price in the partner's currency in force on
that local day (`PriceBook.price_on`). A price change within the month splits the product's invoice line
into one line per daily price, each with the license-days billed at it.

Money is integers only: daily prices in micro-units of the major unit, amounts in minor units.
"""

from __future__ import annotations

import calendar
import re
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import Flag, auto
from functools import lru_cache
from itertools import repeat
from operator import attrgetter
from typing import NamedTuple, TypeVar
from zoneinfo import ZoneInfo

from domain.errors import DomainError, ErrorCode
from domain.products import EARLIEST_PRICE_DATE, MICROS_PER_UNIT, ProductPrice

_MONTH_PATTERN = re.compile(r"([0-9]{4})-([0-9]{2})")
_BY_KEY_THEN_ID = attrgetter("key", "id")
_KEY, _ID, _SITE = attrgetter("key"), attrgetter("id"), attrgetter("site")
FIRST_BILLING_YEAR = 2000
LAST_BILLING_YEAR = 9998  # so that the next month always exists


@dataclass(frozen=True, order=True)
class BillingMonth:
    """A calendar month, in whichever zone the partner bills in (the zone is given where it matters)."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not (FIRST_BILLING_YEAR <= self.year <= LAST_BILLING_YEAR and 1 <= self.month <= 12):
            raise DomainError(
                ErrorCode.INVALID_INPUT,
                f"{self.year:04d}-{self.month:02d} is not a billing month "
                f"(years {FIRST_BILLING_YEAR}-{LAST_BILLING_YEAR}).",
                field="month",
            )

    @classmethod
    def parse(cls, text: str) -> BillingMonth:
        """Read 'YYYY-MM' (e.g. '2026-07'); anything else is INVALID_INPUT on the field 'month'."""
        matched = _MONTH_PATTERN.fullmatch(text.strip())
        if matched is None or not 1 <= int(matched.group(2)) <= 12:
            raise DomainError(
                ErrorCode.INVALID_INPUT,
                f"'{text}' is not a month; write it as YYYY-MM, e.g. 2026-07.",
                "month",
            )
        return cls(int(matched.group(1)), int(matched.group(2)))

    @classmethod
    def containing(cls, instant: datetime, zone: str) -> BillingMonth:
        """The month that `instant` falls in, on the partner's calendar."""
        local = instant.astimezone(ZoneInfo(zone))
        return cls(local.year, local.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    @property
    def days(self) -> int:
        """Number of calendar days (28-31)."""
        return calendar.monthrange(self.year, self.month)[1]

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    def next(self) -> BillingMonth:
        return BillingMonth(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> BillingMonth:
        return BillingMonth(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    def midnights(self, zone: str) -> tuple[datetime, ...]:
        """UTC instants of each local midnight of the month and of the next month's first (days + 1)."""
        return _midnights(self.year, self.month, zone)

    def bounds(self, zone: str) -> tuple[datetime, datetime]:
        """[start, end) of the month in UTC: its first local midnight and the next month's."""
        midnights = self.midnights(zone)
        return midnights[0], midnights[-1]

    def is_over(self, now: datetime, zone: str) -> bool:
        return now >= self.bounds(zone)[1]

    def require_over(self, now: datetime, zone: str) -> None:
        """Refuse to close a month that has not ended yet on the partner's calendar."""
        end = self.bounds(zone)[1]
        if now < end:
            raise DomainError(
                ErrorCode.MONTH_NOT_OVER,
                f"{self} has not ended yet in {zone}; it can be closed from {end.isoformat()}.",
                field="month",
            )


@lru_cache(maxsize=1024)
def _midnights(year: int, month: int, zone: str) -> tuple[datetime, ...]:
    tz = ZoneInfo(zone)
    first = date(year, month, 1)
    count = calendar.monthrange(year, month)[1]
    # fold=0 is the right instant both ways: when midnight is skipped (DST gap at 00:00) it maps to the
    # transition, the day's first instant; when it repeats (fall back to 00:00) it is the first occurrence.
    return tuple(
        datetime.combine(first + timedelta(days=offset), datetime.min.time(), tz).astimezone(UTC)
        for offset in range(count + 1)
    )


class _HoldingFields(NamedTuple):
    id: str
    key: str
    product_slug: str
    site: str | None
    held_from: datetime
    held_until: datetime | None = None
    ended_by_transfer: bool = False


class Holding(_HoldingFields):
    """One partner's tenure of a license key: the row billing reads (see the module docstring).

    A tuple rather than a dataclass: a month close builds one per license, and at 100k licenses the
    frozen dataclass's per-field setattr was a fifth of the estimate's time.
    """

    __slots__ = ()

    def __new__(
        cls,
        id: str,
        key: str,
        product_slug: str,
        site: str | None,
        held_from: datetime,
        held_until: datetime | None = None,
        ended_by_transfer: bool = False,
    ) -> Holding:
        if held_from.tzinfo is None or (held_until is not None and held_until.tzinfo is None):
            raise ValueError(f"holding {id}: instants must be timezone-aware")
        if held_until is not None and held_until < held_from:
            raise ValueError(f"holding {id}: held_until is before held_from")
        if ended_by_transfer and held_until is None:
            raise ValueError(f"holding {id}: a transfer ends the holding, so held_until is required")
        return tuple.__new__(cls, (id, key, product_slug, site, held_from, held_until, ended_by_transfer))

    @property
    def is_assigned(self) -> bool:
        return self.site is not None


class BillableSpan(NamedTuple):
    """A holding's billed local days as day numbers (`date.toordinal()`): `first` to `last`, both
    included; `last` None while the holding is active (billed through the end of any month asked);
    `last < first` when no day is billed (issued and transferred out on one day)."""

    first: int
    last: int | None


def billable_span(
    held_from: datetime, held_until: datetime | None, ended_by_transfer: bool, zone: str
) -> BillableSpan:
    """The day rule for one holding: its first and last billed calendar day in `zone`.

    The day of an instant is the local day whose [midnight, next midnight) contains it, which is the
    instant's local date (see `_midnights` for midnights across DST). The issue (or acceptance) day
    and the revoke day count; a transfer-out day does not (the receiver is billed for it). Stored per
    holding (`licenses.first_billed_day`, `last_billed_day`) so that a month's counts are SQL sums.
    """
    tz = ZoneInfo(zone)
    first = held_from.astimezone(tz).toordinal()
    if held_until is None:
        return BillableSpan(first, None)
    return BillableSpan(first, held_until.astimezone(tz).toordinal() - ended_by_transfer)


def holding_span(holding: Holding, zone: str) -> BillableSpan:
    """`billable_span` of a holding as billing reads it."""
    return billable_span(holding.held_from, holding.held_until, holding.ended_by_transfer, zone)


def billed_days(holding: Holding, month: BillingMonth, zone: str) -> list[date]:
    """The calendar days of the month billed to the holding (for explanations and tests)."""
    ((first, last),) = _day_ranges([holding], month, zone)
    return [month.first_day + timedelta(days=index) for index in range(first, last)]


def license_days(holding: Holding, month: BillingMonth, zone: str) -> int:
    """How many of the month's calendar days are billed to the holding."""
    ((first, last),) = _day_ranges([holding], month, zone)
    return max(last - first, 0)


def count_license_days(holdings: Sequence[Holding], month: BillingMonth, zone: str) -> list[int]:
    """`license_days` for many holdings in one pass."""
    return [last - first if last > first else 0 for first, last in _day_ranges(holdings, month, zone)]


def _day_ranges(holdings: Sequence[Holding], month: BillingMonth, zone: str) -> list[tuple[int, int]]:
    """Each holding's `billable_span` clipped to the month, as indices [first, last) of the month's
    days; first >= last when nothing is billed."""
    month_first = month.first_day.toordinal()
    day_count = month.days
    ranges = []
    for holding in holdings:
        first, last = holding_span(holding, zone)
        ranges.append(
            (
                max(first - month_first, 0),
                day_count if last is None else min(last - month_first + 1, day_count),
            )
        )
    return ranges


def round_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator to the nearest integer, halves away from zero (exact: integers only)."""
    if denominator <= 0:
        raise ValueError("denominator must be positive")
    if numerator < 0:
        return -round_half_up(-numerator, denominator)
    return (2 * numerator + denominator) // (2 * denominator)


def price_in_minor_units(license_days: int, daily_price_micros: int, currency_exponent: int) -> int:
    """The amount for `license_days` at a daily price, rounded half up to the currency's minor unit."""
    return round_half_up(license_days * daily_price_micros * 10**currency_exponent, MICROS_PER_UNIT)


class RemainderPlan(NamedTuple):
    """How largest remainder splits a total over lines grouped by weight (lines of equal weight get equal
    shares and remainders): each line of weight w gets `shares[w]`, one more unit if w is in
    `rounded_up`, and the first `cut_units` lines whose weight is in `cut_weights` (in tie-breaker
    order: the smaller key, then holding) get one more unit too."""

    shares: dict[int, int]
    rounded_up: frozenset[int]
    cut_weights: frozenset[int]
    cut_units: int

    def amount(self, weight: int, rank_at_cut: int) -> int:
        """The share of a line of `weight`; `rank_at_cut` is its 1-based rank among the cut's lines."""
        extra = weight in self.rounded_up or (weight in self.cut_weights and rank_at_cut <= self.cut_units)
        return self.shares[weight] + extra


def plan_largest_remainder(total: int, lines_per_weight: Mapping[int, int]) -> RemainderPlan:
    """`allocate_largest_remainder`'s arithmetic on the count of lines of each weight (not on each line).

    Each share is floor(total * weight / sum of weights); the units left over go one each to the largest
    remainders; the remainder group that cannot all get one is the cut, ranked by the caller's tie breaker.
    """
    if total < 0 or any(weight < 0 for weight in lines_per_weight):
        raise ValueError("total and weights must not be negative")
    weight_sum = sum(weight * lines for weight, lines in lines_per_weight.items())
    if weight_sum == 0:
        if total != 0:
            raise ValueError("cannot allocate a non-zero total over zero weights")
        return RemainderPlan(dict.fromkeys(lines_per_weight, 0), frozenset(), frozenset(), 0)
    shares: dict[int, int] = {}
    weights_by_remainder: dict[int, set[int]] = defaultdict(set)
    for weight in lines_per_weight:
        shares[weight], remainder = divmod(total * weight, weight_sum)
        if remainder:
            weights_by_remainder[remainder].add(weight)
    # Fewer units are left over than there are lines, since each share lost less than one unit.
    left_over = total - sum(shares[weight] * lines for weight, lines in lines_per_weight.items())
    rounded_up: set[int] = set()
    for remainder in sorted(weights_by_remainder, reverse=True):
        if not left_over:
            break
        group = weights_by_remainder[remainder]
        group_size = sum(lines_per_weight[weight] for weight in group)
        if group_size <= left_over:
            rounded_up |= group
            left_over -= group_size
        else:  # lines of several weights can share a remainder: they are ranked together
            return RemainderPlan(shares, frozenset(rounded_up), frozenset(group), left_over)
    return RemainderPlan(shares, frozenset(rounded_up), frozenset(), 0)


def allocate_largest_remainder(
    total: int, weights: Sequence[int], tie_breakers: Sequence[str] | None = None
) -> list[int]:
    """Split `total` in proportion to `weights` into integers that add up to exactly `total`.

    Each share is floor(total * weight / sum of weights); the units left over go one each to the largest
    remainders. Equal remainders go to the smallest tie breaker (e.g. the license key), then position.
    """
    # A statement's weights are day counts (at most 31 distinct values): the plan works per weight.
    plan = plan_largest_remainder(total, Counter(weights))
    shares = [plan.shares[weight] for weight in weights]
    if plan.rounded_up:
        rounded_up = plan.rounded_up
        shares = [share + (weight in rounded_up) for share, weight in zip(shares, weights, strict=True)]
    if plan.cut_units:
        at_the_cut = [position for position, weight in enumerate(weights) if weight in plan.cut_weights]
        ties = tie_breakers
        if ties is not None:
            at_the_cut.sort(key=lambda position: (ties[position], position))
        for position in at_the_cut[: plan.cut_units]:
            shares[position] += 1
    return shares


@dataclass(frozen=True, slots=True)
class LicenseCounts:
    """Licenses (distinct keys) billed in the month; assigned when the key's latest holding has a site."""

    assigned: int = 0
    unassigned: int = 0

    @property
    def total(self) -> int:
        return self.assigned + self.unassigned

    def __add__(self, other: LicenseCounts) -> LicenseCounts:
        return LicenseCounts(self.assigned + other.assigned, self.unassigned + other.unassigned)


@dataclass(frozen=True, slots=True)
class Costs:
    """Amounts in minor units; `assigned + unassigned == total` exactly (allocated from the day-lines)."""

    assigned: int = 0
    unassigned: int = 0

    @property
    def total(self) -> int:
        return self.assigned + self.unassigned


@dataclass(frozen=True, slots=True)
class ProductLine:
    """One invoice line: a product's license-days at its daily price, rounded half up to minor units."""

    product_slug: str
    license_days: int
    daily_price_micros: int
    amount: int
    counts: LicenseCounts

    @property
    def exact_amount_micros(self) -> int:
        """The amount before rounding, in micro-units of the major unit."""
        return self.license_days * self.daily_price_micros


class DayLine(NamedTuple):
    """One holding's license-days at one daily price, and the amount allocated to them from their line."""

    holding_id: str
    key: str
    product_slug: str
    site: str | None
    days: int
    amount: int
    daily_price_micros: int


@dataclass(frozen=True)
class Statement:
    """What a month costs a partner. Product lines are sorted by product slug, then by the first day their
    price applied; day-lines by (product slug, key, holding id, line). total == sum of product line
    amounts == sum of day-line amounts, and each line's day-lines add up to it."""

    month: BillingMonth
    zone: str
    currency_exponent: int
    product_lines: tuple[ProductLine, ...]
    day_lines: tuple[DayLine, ...]
    counts: LicenseCounts
    costs: Costs

    @property
    def total(self) -> int:
        return self.costs.total

    @property
    def license_days(self) -> int:
        return sum(line.license_days for line in self.product_lines)


class PricePeriod(NamedTuple):
    """Days [first, last) of a month (indices from its first day) at one daily price; None: no price."""

    first: int
    last: int
    daily_price_micros: int | None


class PriceBook:
    """One currency's dated daily prices per product: the price lookup of the day rule.

    The price of a product on a local day is the row with the latest `effective_from` on or before that
    day; before its first row the product has no price in this currency.
    """

    def __init__(self, currency: str, prices: Iterable[ProductPrice]) -> None:
        self.currency = currency
        rows: dict[str, list[tuple[date, int]]] = defaultdict(list)
        for price in prices:
            if price.currency == currency:
                rows[price.product_slug].append((price.effective_from, price.daily_price_micros))
        self._dates: dict[str, list[date]] = {}
        self._micros: dict[str, list[int]] = {}
        for slug, dated in rows.items():
            dated.sort()
            self._dates[slug] = [day for day, _ in dated]
            self._micros[slug] = [micros for _, micros in dated]

    @classmethod
    def constant(cls, prices: Mapping[str, int], currency: str = "usd") -> PriceBook:
        """Prices that never change (product slug → daily price in micros)."""
        return cls(
            currency,
            (ProductPrice(slug, currency, EARLIEST_PRICE_DATE, micros) for slug, micros in prices.items()),
        )

    @property
    def product_slugs(self) -> list[str]:
        """The products with a price in this currency."""
        return sorted(self._dates)

    def price_on(self, product_slug: str, day: date) -> int | None:
        """The daily price in force on the local day `day`, or None if there is none yet."""
        dates = self._dates.get(product_slug)
        if not dates:
            return None
        index = bisect_right(dates, day) - 1
        return None if index < 0 else self._micros[product_slug][index]

    def require_price_on(self, product_slug: str, day: date, field: str | None = None) -> int:
        """`price_on`, refusing with PRICE_NOT_AVAILABLE when there is no price."""
        price = self.price_on(product_slug, day)
        if price is None:
            raise self.missing_price(product_slug, day, field)
        return price

    def missing_price(self, product_slug: str, day: date, field: str | None = None) -> DomainError:
        return DomainError(
            ErrorCode.PRICE_NOT_AVAILABLE,
            f"'{product_slug}' has no price in {self.currency.upper()} on {day.isoformat()}.",
            field,
        )

    def periods(self, product_slug: str, month: BillingMonth) -> list[PricePeriod]:
        """The month's days split where the price changes (a change to the same price splits nothing)."""
        first_day = month.first_day
        dates = self._dates.get(product_slug, [])
        periods = []
        start, current = 0, self.price_on(product_slug, first_day)
        for change in dates[bisect_right(dates, first_day) :]:
            index = (change - first_day).days
            if index >= month.days:
                break
            price = self.price_on(product_slug, change)
            if price != current:
                periods.append(PricePeriod(start, index, current))
                start, current = index, price
        periods.append(PricePeriod(start, month.days, current))
        return periods


def build_statement(
    holdings: Sequence[Holding],
    prices: PriceBook | Mapping[str, int],
    month: BillingMonth,
    zone: str,
    currency_exponent: int,
) -> Statement:
    """Count, price and itemize a partner's month. `prices` is the partner's currency's PriceBook (or,
    for prices that never change, a mapping of product slug → daily price in micros).

    Holdings with no billed day in the month produce no day-line. A product has one line per daily price
    in force on some billed day; each line's amount is round_half_up(its days * price), allocated to its
    day-lines (one per holding with days at that price) by largest remainder of their days, ties to the
    smallest key, so the day-lines add up exactly to the line; the assigned/unassigned costs are sums of
    day-lines, so they add up too. A billed day with no price in force is PRICE_NOT_AVAILABLE.
    """
    book = prices if isinstance(prices, PriceBook) else PriceBook.constant(prices)
    billed_by_product: dict[str, tuple[list[Holding], list[tuple[int, int]]]] = defaultdict(lambda: ([], []))
    for holding, day_range in zip(holdings, _day_ranges(holdings, month, zone), strict=True):
        if day_range[1] > day_range[0]:
            line_holdings, line_ranges = billed_by_product[holding.product_slug]
            line_holdings.append(holding)
            line_ranges.append(day_range)

    product_lines: list[ProductLine] = []
    day_lines: list[DayLine] = []
    counts = LicenseCounts()
    assigned_cost = unassigned_cost = 0
    for slug in sorted(billed_by_product):
        unsorted_holdings, unsorted_ranges = billed_by_product[slug]
        # Order by key, then holding id (unique): the day-lines' order, and ties go to the smaller key.
        order = sorted(
            range(len(unsorted_holdings)), key=list(map(_BY_KEY_THEN_ID, unsorted_holdings)).__getitem__
        )
        billed = [unsorted_holdings[position] for position in order]
        keys = list(map(_KEY, billed))
        holding_ids = list(map(_ID, billed))
        sites = list(map(_SITE, billed))
        days_by_price = _days_by_price([unsorted_ranges[position] for position in order], book, slug, month)
        counts += _count_licenses(billed, keys, sites)
        shares_by_price = {}
        for price, days_column in days_by_price.items():
            line_days = sum(days_column)
            amount = price_in_minor_units(line_days, price, currency_exponent)
            # Lines are in key order, so position order breaks ties by key.
            shares = allocate_largest_remainder(amount, days_column)
            shares_by_price[price] = shares
            in_line = [position for position, days in enumerate(days_column) if days]
            line_counts = _count_licenses(
                [billed[p] for p in in_line], [keys[p] for p in in_line], [sites[p] for p in in_line]
            )
            product_lines.append(ProductLine(slug, line_days, price, amount, line_counts))
            line_assigned = sum(share for share, site in zip(shares, sites, strict=True) if site is not None)
            assigned_cost += line_assigned
            unassigned_cost += amount - line_assigned
        if len(days_by_price) == 1:  # the usual case: one price all month, one day-line per holding
            ((price, days_column),) = days_by_price.items()
            day_lines.extend(
                map(
                    DayLine._make,
                    zip(
                        holding_ids,
                        keys,
                        repeat(slug),
                        sites,
                        days_column,
                        shares_by_price[price],
                        repeat(price),
                    ),
                )
            )
            continue
        for position in range(len(billed)):
            for price, days_column in days_by_price.items():
                if days_column[position]:
                    day_lines.append(
                        DayLine(
                            holding_ids[position],
                            keys[position],
                            slug,
                            sites[position],
                            days_column[position],
                            shares_by_price[price][position],
                            price,
                        )
                    )
    return Statement(
        month=month,
        zone=zone,
        currency_exponent=currency_exponent,
        product_lines=tuple(product_lines),
        day_lines=tuple(day_lines),
        counts=counts,
        costs=Costs(assigned_cost, unassigned_cost),
    )


def _days_by_price(
    ranges: Sequence[tuple[int, int]], book: PriceBook, slug: str, month: BillingMonth
) -> dict[int, list[int]]:
    """Each holding's billed days at each daily price, prices in the order they first apply."""
    periods = book.periods(slug, month)
    if len(periods) == 1 and periods[0].daily_price_micros is not None:
        return {periods[0].daily_price_micros: [last - first for first, last in ranges]}
    days_by_price: dict[int, list[int]] = {}
    for period_first, period_last, price in periods:
        overlaps = [max(min(last, period_last) - max(first, period_first), 0) for first, last in ranges]
        if not any(overlaps):
            continue
        if price is None:
            first_unpriced = min(
                max(first, period_first) for (first, _), days in zip(ranges, overlaps, strict=True) if days
            )
            raise book.missing_price(slug, month.first_day + timedelta(days=first_unpriced), "product")
        column = days_by_price.setdefault(price, [0] * len(ranges))
        for position, days in enumerate(overlaps):
            column[position] += days
    return days_by_price


def _count_licenses(
    holdings: Sequence[Holding], keys: Sequence[str], sites: Sequence[str | None]
) -> LicenseCounts:
    """Distinct keys; a key held twice in the month (A → B → A) is classified by its latest holding."""
    if len(set(keys)) == len(keys):  # the usual case: one holding per key
        unassigned = sites.count(None)
        return LicenseCounts(len(sites) - unassigned, unassigned)
    latest: dict[str, Holding] = {}
    for holding in holdings:
        seen = latest.get(holding.key)
        if seen is None or holding.held_from >= seen.held_from:
            latest[holding.key] = holding
    assigned = sum(1 for holding in latest.values() if holding.site is not None)
    return LicenseCounts(assigned, len(latest) - assigned)


class SpanGroup(NamedTuple):
    """Holdings of one product whose billed days in the month are the same [first, last] (indices from
    the month's first day, both included): how many, and how many of them are on a site. What the
    database sums a month's billed-day spans into."""

    product_slug: str
    first: int
    last: int
    holdings: int
    on_site: int


class HeldAgain(NamedTuple):
    """A holding of a key the partner held more than once in the month (it left by transfer and came
    back): only the latest holding of a key classifies it, so these are read one by one."""

    id: str
    key: str
    product_slug: str
    assigned: bool
    held_from: datetime
    first: int
    last: int


_Part = TypeVar("_Part")


class StatementParts(Flag):
    """What an open month's estimate reads beyond its lines, license-days and total: each part costs the
    database one statement more, so a reader asks only for the parts it will show."""

    LINES = 0
    COUNTS = auto()  # licenses billed (distinct keys): the keys the partner held twice are read
    COST_SPLIT = auto()  # the cost of assigned and of unassigned licenses: each line's cut is ranked
    ALL = COUNTS | COST_SPLIT


class PartNotRead(RuntimeError):
    """A part of the estimate was used that its reader did not ask for (a bug, never a user's error)."""

    def __init__(self, part: StatementParts) -> None:
        super().__init__(f"the estimate was read without its {part.name}")


def read_part(value: _Part | None, part: StatementParts) -> _Part:
    """`value` as read for `part`; None means the reader did not ask for it."""
    if value is None:
        raise PartNotRead(part)
    return value


@dataclass(frozen=True, slots=True)
class LinePlan:
    """One invoice line and how its amount is allocated to its day-lines."""

    product_slug: str
    license_days: int
    daily_price_micros: int
    amount: int
    allocation: RemainderPlan
    assigned_before_cut: int  # the amount of its assigned day-lines, without the cut's extra units
    line_counts: LicenseCounts | None  # None: the counts were not read

    @property
    def counts(self) -> LicenseCounts:
        return read_part(self.line_counts, StatementParts.COUNTS)

    @property
    def line(self) -> ProductLine:
        return ProductLine(
            self.product_slug, self.license_days, self.daily_price_micros, self.amount, self.counts
        )


@dataclass(frozen=True)
class MonthSums:
    """A month's statement from summed day-line groups: lines and total, the counts and the cost split
    when read, without the day-lines themselves (they are paged from the database with the same
    allocation)."""

    month: BillingMonth
    zone: str
    currency_exponent: int
    lines: tuple[LinePlan, ...]
    month_counts: LicenseCounts | None  # None: the counts were not read
    periods: Mapping[str, Sequence[PricePeriod]]  # each billed product's prices in the month
    # Per cut line (product, daily price): its assigned day-lines among the first `cut_units` at the
    # cut. None: the cost split was not read.
    assigned_at_cut: Mapping[tuple[str, int], int] | None = None

    @property
    def total(self) -> int:
        return sum(plan.amount for plan in self.lines)

    @property
    def license_days(self) -> int:
        return sum(plan.license_days for plan in self.lines)

    @property
    def counts(self) -> LicenseCounts:
        return read_part(self.month_counts, StatementParts.COUNTS)

    @property
    def costs(self) -> Costs:
        """The month's cost split by assigned and unassigned day-lines."""
        assigned_at_cut = read_part(self.assigned_at_cut, StatementParts.COST_SPLIT)
        assigned = sum(
            plan.assigned_before_cut + assigned_at_cut.get((plan.product_slug, plan.daily_price_micros), 0)
            for plan in self.lines
        )
        return Costs(assigned, self.total - assigned)

    def cut_lines(self) -> list[LinePlan]:
        """The lines whose allocation has a cut, ranked by the smaller key then holding."""
        return [plan for plan in self.lines if plan.allocation.cut_units]

    def price_periods(self, plan: LinePlan) -> list[tuple[int, int]]:
        """The [first, last] days (indices) of the month at the line's price: a day-line's days are its
        span's overlap with them (one period unless the product's price comes back to it)."""
        return [
            (period.first, period.last - 1)
            for period in self.periods[plan.product_slug]
            if period.daily_price_micros == plan.daily_price_micros
        ]

    def statement(self) -> Statement:
        """The whole statement (without day-lines): every part must have been read."""
        return Statement(
            month=self.month,
            zone=self.zone,
            currency_exponent=self.currency_exponent,
            product_lines=tuple(plan.line for plan in self.lines),
            day_lines=(),
            counts=self.counts,
            costs=self.costs,
        )


def sum_month(
    groups: Iterable[SpanGroup],
    held_again: Sequence[HeldAgain] | None,
    book: PriceBook,
    month: BillingMonth,
    zone: str,
    currency_exponent: int,
) -> MonthSums:
    """`build_statement`'s lines, counts and allocation, from span groups summed by the database
    (`held_again` None: the counts are not asked for).

    Each group's days are split at the month's price changes (`PriceBook.periods`) exactly as
    `build_statement` splits a holding's, so a group is one weight of each line it has days in.
    """
    groups = list(groups)
    periods = {slug: book.periods(slug, month) for slug in {group.product_slug for group in groups}}
    # Most products have one price all month: a group is then one weight of that price's line.
    one_price = {
        slug: (slug, found[0].daily_price_micros) for slug, found in periods.items() if len(found) == 1
    }
    weights: dict[tuple[str, int | None], Counter[int]] = defaultdict(Counter)
    assigned_weights: dict[tuple[str, int | None], Counter[int]] = defaultdict(Counter)
    keys: dict[tuple[str, int | None], list[int]] = {}  # [assigned, unassigned] holdings per line
    first_days: dict[tuple[str, int | None], int] = {}
    for slug, first, last, holdings, on_site in groups:
        line = one_price.get(slug)
        pieces = (
            ((line, last - first + 1, first),)
            if line is not None and last >= first
            else _days_at_prices(periods[slug], slug, first, last)
        )
        for line, days, first_day in pieces:
            weights[line][days] += holdings
            if on_site:
                assigned_weights[line][days] += on_site
            line_keys = keys.get(line)
            if line_keys is None:
                keys[line] = [on_site, holdings - on_site]
                first_days[line] = first_day
            else:
                line_keys[0] += on_site
                line_keys[1] += holdings - on_site
                if first_day < first_days[line]:
                    first_days[line] = first_day
    unpriced = [(slug, first_days[slug, price]) for slug, price in first_days if price is None]
    if unpriced:
        slug, first_day = min(unpriced)
        raise book.missing_price(slug, month.first_day + timedelta(days=first_day), "product")
    line_counts, month_counts = _line_counts(groups, keys, held_again, periods)
    plans = []
    for slug, price in sorted(first_days, key=lambda line: (line[0], first_days[line])):
        assert price is not None  # unpriced lines were refused above
        lines_per_weight = weights[slug, price]
        line_days = sum(days * lines for days, lines in lines_per_weight.items())
        amount = price_in_minor_units(line_days, price, currency_exponent)
        allocation = plan_largest_remainder(amount, lines_per_weight)
        assigned_before_cut = sum(
            lines * (allocation.shares[days] + (days in allocation.rounded_up))
            for days, lines in assigned_weights[slug, price].items()
        )
        counts = None if line_counts is None else line_counts[slug, price]
        plans.append(LinePlan(slug, line_days, price, amount, allocation, assigned_before_cut, counts))
    return MonthSums(month, zone, currency_exponent, tuple(plans), month_counts, periods)


def _line_counts(
    groups: Sequence[SpanGroup],
    keys: Mapping[tuple[str, int | None], list[int]],
    held_again: Sequence[HeldAgain] | None,
    periods: Mapping[str, Sequence[PricePeriod]],
) -> tuple[dict[tuple[str, int | None], LicenseCounts] | None, LicenseCounts | None]:
    """Licenses (distinct keys) per line and in the month: holdings counted, less those of keys held
    again that do not classify their key. (None, None) when `held_again` was not read."""
    if held_again is None:
        return None, None
    product_keys: dict[str, Counter[bool]] = defaultdict(Counter)
    for group in groups:
        product = product_keys[group.product_slug]
        product[True] += group.on_site
        product[False] += group.holdings - group.on_site
    line_keys: dict[tuple[str, int | None], Counter[bool]] = {
        line: Counter({True: assigned, False: unassigned}) for line, (assigned, unassigned) in keys.items()
    }
    for place, counter in _not_latest(held_again, periods):
        if place[1] == _PRODUCT:
            product_keys[place[0]] -= counter
        else:
            line_keys.setdefault(place, Counter())
            line_keys[place] -= counter
    month_counts = LicenseCounts()
    for product in product_keys.values():
        month_counts += LicenseCounts(product[True], product[False])
    return {
        line: LicenseCounts(counter[True], counter[False]) for line, counter in line_keys.items()
    }, month_counts


_PRODUCT = -1  # not a daily price: marks a product-wide key count in `_not_latest`


def _days_at_prices(
    periods: Sequence[PricePeriod], product_slug: str, first: int, last: int
) -> list[tuple[tuple[str, int | None], int, int]]:
    """The days [first, last] at each daily price, as ((product, price), days, first day at that
    price), prices in the order they first apply (a price that comes back adds up)."""
    if len(periods) == 1 and last >= first:  # the usual case: one price all month
        return [((product_slug, periods[0].daily_price_micros), last - first + 1, first)]
    days_at: dict[int | None, list[int]] = {}
    for period in periods:
        start, end = max(first, period.first), min(last + 1, period.last)
        if end > start:
            found = days_at.setdefault(period.daily_price_micros, [0, start])
            found[0] += end - start
    return [((product_slug, price), days, start) for price, (days, start) in days_at.items()]


def _not_latest(
    held_again: Sequence[HeldAgain], periods: Mapping[str, Sequence[PricePeriod]]
) -> list[tuple[tuple[str, int | None], Counter[bool]]]:
    """Holdings counted in the groups that do not classify their key (an earlier holding of the same key
    in the same line, or in the product when `price` is `_PRODUCT`), by assigned."""
    latest_in: dict[tuple[str, int | None, str], HeldAgain] = {}
    seen: list[tuple[tuple[str, int | None, str], HeldAgain]] = []
    for holding in sorted(held_again, key=lambda h: (h.key, h.id)):
        places = [(holding.product_slug, _PRODUCT, holding.key)] + [
            (line[0], line[1], holding.key)
            for line, _, _ in _days_at_prices(
                periods[holding.product_slug], holding.product_slug, holding.first, holding.last
            )
        ]
        for place in places:
            seen.append((place, holding))
            current = latest_in.get(place)
            if current is None or holding.held_from >= current.held_from:
                latest_in[place] = holding
    not_latest: dict[tuple[str, int | None], Counter[bool]] = defaultdict(Counter)
    for place, holding in seen:
        if latest_in[place] is not holding:
            not_latest[place[0], place[1]][holding.assigned] += 1
    return list(not_latest.items())
