"""Dated prices, checked on generated histories and price schedules (Hypothesis).

The oracle prices each license-day on its own: walk the holding's local calendar dates one by one and
look the price up by scanning the schedule, instead of splitting the month into price periods.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.billing import BillingMonth, Holding, PriceBook, build_statement, price_in_minor_units
from domain.errors import DomainError, ErrorCode
from domain.products import ProductPrice
from tests.unit.test_billing_properties import DST_MONTHS, holdings_in

PRODUCTS = ["backup", "scan", "search"]


def dst_day(zone: str, month: BillingMonth) -> date:
    """The local day of the month whose length is not 24 hours (the DST change)."""
    midnights = month.midnights(zone)
    for index in range(month.days):
        if midnights[index + 1] - midnights[index] != timedelta(days=1):
            return month.first_day + timedelta(days=index)
    raise AssertionError(f"{zone} has no DST change in {month}")


@st.composite
def schedules(draw: st.DrawFn, zone: str, month: BillingMonth) -> list[ProductPrice]:
    """Per product: a price from before the month, then up to 3 changes, often on the DST day itself."""
    prices = []
    for slug in PRODUCTS:
        prices.append(ProductPrice(slug, "usd", date(2000, 1, 1), draw(st.integers(1, 3_000_000))))
        day_choices = st.one_of(
            st.just(dst_day(zone, month)),
            st.integers(0, month.days + 3).map(lambda offset: month.first_day + timedelta(days=offset)),
        )
        for change in draw(st.lists(day_choices, max_size=3, unique=True)):
            prices.append(ProductPrice(slug, "usd", change, draw(st.integers(1, 3_000_000))))
    return prices


def price_by_scanning(prices: list[ProductPrice], slug: str, day: date) -> int:
    in_force = [p for p in prices if p.product_slug == slug and p.effective_from <= day]
    return max(in_force, key=lambda p: p.effective_from).daily_price_micros


def billed_local_dates(holding: Holding, month: BillingMonth, zone: str) -> list[date]:
    tz = ZoneInfo(zone)
    first = max(holding.held_from.astimezone(tz).date(), month.first_day)
    last = date(month.year, month.month, month.days)
    if holding.held_until is not None:
        last = min(last, holding.held_until.astimezone(tz).date() - timedelta(days=holding.ended_by_transfer))
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_each_license_day_is_priced_at_the_price_in_force_that_local_day_even_on_dst_days(
    data: st.DataObject,
) -> None:
    zone, month = data.draw(st.sampled_from(DST_MONTHS))
    prices = data.draw(schedules(zone, month))
    holdings = [
        data.draw(holdings_in(zone, month, key=f"KEY-{n}")) for n in range(data.draw(st.integers(0, 12)))
    ]
    statement = build_statement(holdings, PriceBook("usd", prices), month, zone, 2)

    expected_days: Counter[tuple[str, int]] = Counter()
    for holding in holdings:
        for day in billed_local_dates(holding, month, zone):
            expected_days[(holding.product_slug, price_by_scanning(prices, holding.product_slug, day))] += 1
    lines = {(line.product_slug, line.daily_price_micros): line for line in statement.product_lines}
    assert {key: line.license_days for key, line in lines.items()} == dict(expected_days)
    for (_, price), line in lines.items():
        assert line.amount == price_in_minor_units(line.license_days, price, 2)

    day_lines_by_line: defaultdict[tuple[str, int], list[int]] = defaultdict(list)
    for day_line in statement.day_lines:
        day_lines_by_line[(day_line.product_slug, day_line.daily_price_micros)].append(day_line.amount)
    assert {key: sum(amounts) for key, amounts in day_lines_by_line.items()} == {
        key: line.amount for key, line in lines.items()
    }
    assert statement.total == sum(line.amount for line in statement.product_lines)


@pytest.mark.parametrize(("zone", "month"), DST_MONTHS, ids=[f"{z}-{m}" for z, m in DST_MONTHS])
def test_price_change_on_the_dst_day_bills_that_day_at_the_new_price(zone: str, month: BillingMonth) -> None:
    change = dst_day(zone, month)
    prices = [
        ProductPrice("backup", "usd", date(2000, 1, 1), 100_000),
        ProductPrice("backup", "usd", change, 300_000),
    ]
    all_month = Holding("hld-1", "KEY-1", "backup", None, month.bounds(zone)[0])
    statement = build_statement([all_month], PriceBook("usd", prices), month, zone, 2)
    days_before = (change - month.first_day).days  # 0 when the DST day is the 1st (New York, 2026-11)
    expected = [(100_000, days_before), (300_000, month.days - days_before)]
    expected = [(price, days) for price, days in expected if days]
    assert [(line.daily_price_micros, line.license_days) for line in statement.product_lines] == expected
    assert [(line.daily_price_micros, line.days) for line in statement.day_lines] == expected


def test_a_day_before_the_first_price_in_the_currency_is_price_not_available() -> None:
    month = BillingMonth(2026, 7)
    prices = [ProductPrice("backup", "eur", date(2026, 7, 10), 100_000)]
    holding = Holding("hld-1", "KEY-1", "backup", None, month.bounds("UTC")[0])
    with pytest.raises(DomainError) as refused:
        build_statement([holding], PriceBook("eur", prices), month, "UTC", 2)
    assert refused.value.code is ErrorCode.PRICE_NOT_AVAILABLE
    assert "2026-07-01" in refused.value.message
