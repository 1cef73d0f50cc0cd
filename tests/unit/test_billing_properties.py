"""Properties of the day rule and of the money, checked on generated histories (Hypothesis).

The oracle for days is an independent reading of the rule: convert each instant to the partner's local
date and count calendar dates, instead of bisecting precomputed UTC midnights.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.billing import (
    BillingMonth,
    Holding,
    allocate_largest_remainder,
    billed_days,
    build_statement,
    count_license_days,
    license_days,
    round_half_up,
)
from domain.partners import SUPPORTED_CURRENCIES

DST_MONTHS = [
    ("America/New_York", BillingMonth(2026, 3)),
    ("America/New_York", BillingMonth(2026, 11)),
    ("Europe/Paris", BillingMonth(2026, 3)),
    ("Europe/Paris", BillingMonth(2026, 10)),
    ("Australia/Lord_Howe", BillingMonth(2026, 4)),
    ("Australia/Lord_Howe", BillingMonth(2026, 10)),
]
# Also zones whose DST shift happens at midnight itself, and far from UTC on both sides.
ZONES = [
    "UTC",
    "America/New_York",
    "Europe/Paris",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Pacific/Kiritimati",
]
FAST = settings(max_examples=150, deadline=None)

months = st.builds(BillingMonth, st.integers(2020, 2032), st.integers(1, 12))
zone_and_month = st.one_of(st.sampled_from(DST_MONTHS), st.tuples(st.sampled_from(ZONES), months))


@st.composite
def instants_around(draw: st.DrawFn, zone: str, month: BillingMonth) -> datetime:
    """An instant from ~40 days before the month to ~40 days after, often within seconds of a midnight."""
    start, end = month.bounds(zone)
    if draw(st.booleans()):
        midnights = month.midnights(zone)
        return draw(st.sampled_from(midnights)) + timedelta(seconds=draw(st.integers(-2, 2)))
    span = int((end - start).total_seconds()) + 80 * 86400
    return start - timedelta(days=40) + timedelta(seconds=draw(st.integers(0, span)))


@st.composite
def holdings_in(draw: st.DrawFn, zone: str, month: BillingMonth, key: str = "KEY") -> Holding:
    held_from = draw(instants_around(zone, month))
    held_until = None
    if draw(st.booleans()):
        held_until = max(held_from, draw(instants_around(zone, month)))
    return Holding(
        id=f"hld-{draw(st.integers(0, 10**9))}",
        key=key,
        product_slug=draw(st.sampled_from(["backup", "scan", "search"])),
        site=draw(st.sampled_from([None, "https://a.example", "https://b.example"])),
        held_from=held_from,
        held_until=held_until,
        ended_by_transfer=held_until is not None and draw(st.booleans()),
    )


def local_calendar_days(holding: Holding, month: BillingMonth, zone: str) -> int:
    """The oracle: local dates from the holding's first to its last billed day, clipped to the month."""
    tz = ZoneInfo(zone)
    first = holding.held_from.astimezone(tz).date()
    month_last = date(month.year, month.month, month.days)
    if holding.held_until is None:
        last = month_last
    else:
        last = holding.held_until.astimezone(tz).date() - timedelta(days=holding.ended_by_transfer)
    first, last = max(first, month.first_day), min(last, month_last)
    return max((last - first).days + 1, 0)


@FAST
@given(st.data())
def test_license_days_are_the_local_calendar_days_held(data: st.DataObject) -> None:
    zone, month = data.draw(zone_and_month)
    holding = data.draw(holdings_in(zone, month))
    assert license_days(holding, month, zone) == local_calendar_days(holding, month, zone)


@FAST
@given(st.data())
def test_counting_all_at_once_agrees_with_one_by_one(data: st.DataObject) -> None:
    zone, month = data.draw(zone_and_month)
    holdings = data.draw(st.lists(holdings_in(zone, month), max_size=20))
    assert count_license_days(holdings, month, zone) == [license_days(h, month, zone) for h in holdings]


@FAST
@given(zone_and_month, st.integers(1, 2_000_000), st.integers(0, 3 * 86400))
def test_license_active_all_month_costs_days_in_month_times_the_daily_price(
    zone_month: tuple[str, BillingMonth], price: int, seconds_before: int
) -> None:
    zone, month = zone_month
    issued = month.bounds(zone)[0] - timedelta(seconds=seconds_before)
    holding = Holding("hld-1", "KEY", "backup", None, issued)
    statement = build_statement([holding], {"backup": price}, month, zone, 2)
    (line,) = statement.product_lines
    assert line.license_days == month.days == calendar_days_between_midnights(month, zone)
    assert line.exact_amount_micros == month.days * price


def calendar_days_between_midnights(month: BillingMonth, zone: str) -> int:
    return len(month.midnights(zone)) - 1


@pytest.mark.parametrize(("zone", "month"), DST_MONTHS, ids=[f"{z}-{m}" for z, m in DST_MONTHS])
def test_dst_months_have_one_midnight_per_calendar_day(zone: str, month: BillingMonth) -> None:
    midnights = month.midnights(zone)
    tz = ZoneInfo(zone)
    assert len(midnights) == month.days + 1
    for offset, midnight in enumerate(midnights):
        local = midnight.astimezone(tz)
        assert local.date() == month.first_day + timedelta(days=offset)
        assert local.time() == time(0, 0)  # these zones shift at 02:00, never at midnight
        assert (midnight - timedelta(microseconds=1)).astimezone(tz).date() < local.date()


@pytest.mark.parametrize("zone", ZONES)
def test_every_month_of_a_year_counts_its_calendar_days(zone: str) -> None:
    for number in range(1, 13):
        month = BillingMonth(2026, number)
        midnights = month.midnights(zone)
        assert len(midnights) == month.days + 1
        assert all(earlier < later for earlier, later in pairwise(midnights))
        # Each midnight starts its local day: an instant just before it is still the previous date.
        tz = ZoneInfo(zone)
        assert all(
            (m - timedelta(microseconds=1)).astimezone(tz).date() < m.astimezone(tz).date() for m in midnights
        )


@st.composite
def transfer_chains(draw: st.DrawFn, zone: str, month: BillingMonth) -> tuple[Holding, list[Holding]]:
    """One license's history, and the same history split at random instants into a chain of transfers."""
    instants = sorted(draw(st.lists(instants_around(zone, month), min_size=2, max_size=8)))
    held_from: datetime = instants[0]
    held_until: datetime | None
    if draw(st.booleans()):  # revoked at the last instant
        transfers, held_until = instants[1:-1], instants[-1]
    else:  # still active
        transfers, held_until = instants[1:], None
    whole = Holding("whole", "KEY", "backup", None, held_from, held_until)
    chain = []
    starts = [held_from, *transfers]
    for link, (start, transfer) in enumerate(zip(starts, transfers, strict=False)):
        chain.append(Holding(f"link-{link}", "KEY", "backup", None, start, transfer, ended_by_transfer=True))
    chain.append(Holding(f"link-{len(transfers)}", "KEY", "backup", None, starts[-1], held_until))
    return whole, chain


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_splitting_a_history_by_transfers_conserves_days_and_bills_each_day_once(data: st.DataObject) -> None:
    zone, month = data.draw(zone_and_month)
    whole, chain = data.draw(transfer_chains(zone, month))
    days_by_holder = [billed_days(holding, month, zone) for holding in chain]
    billed = [day for days in days_by_holder for day in days]
    assert len(billed) == len(set(billed))  # no license-day billed twice across transfers
    assert sorted(billed) == billed_days(whole, month, zone)  # and none lost
    assert sum(count_license_days(chain, month, zone)) == license_days(whole, month, zone)


@st.composite
def partner_months(draw: st.DrawFn) -> tuple[str, BillingMonth, list[Holding], dict[str, int], int]:
    zone, month = draw(zone_and_month)
    holdings = [
        draw(holdings_in(zone, month, key=f"KEY-{number:03d}")) for number in range(draw(st.integers(0, 30)))
    ]
    prices = {slug: draw(st.integers(0, 3_000_000)) for slug in ["backup", "scan", "search"]}
    exponent = draw(st.sampled_from(sorted(set(SUPPORTED_CURRENCIES.values()))))
    return zone, month, holdings, prices, exponent


@FAST
@given(partner_months())
def test_invoice_total_is_the_sum_of_product_lines_and_of_day_lines(
    case: tuple[str, BillingMonth, list[Holding], dict[str, int], int],
) -> None:
    zone, month, holdings, prices, exponent = case
    statement = build_statement(holdings, prices, month, zone, exponent)
    assert statement.total == sum(line.amount for line in statement.product_lines)
    assert statement.total == sum(day_line.amount for day_line in statement.day_lines)
    assert statement.costs.assigned + statement.costs.unassigned == statement.total
    assert statement.costs.assigned == sum(d.amount for d in statement.day_lines if d.site is not None)
    for line in statement.product_lines:
        day_lines = [d for d in statement.day_lines if d.product_slug == line.product_slug]
        assert sum(d.amount for d in day_lines) == line.amount
        assert sum(d.days for d in day_lines) == line.license_days
        assert line.amount == round_half_up(line.license_days * line.daily_price_micros * 10**exponent, 10**6)
        for d in day_lines:  # each day-line is its exact share of the line, rounded down or up
            share_numerator = line.amount * d.days
            assert (
                share_numerator // line.license_days <= d.amount <= -(-share_numerator // line.license_days)
            )
    assert all(d.days > 0 for d in statement.day_lines)
    assert len(statement.day_lines) == sum(1 for days in count_license_days(holdings, month, zone) if days)
    assert statement.counts.total == len({d.key for d in statement.day_lines})


@FAST
@given(
    st.integers(0, 10**9),
    st.lists(st.integers(0, 10**6), min_size=1, max_size=40).filter(lambda weights: sum(weights) > 0),
)
def test_largest_remainder_adds_up_and_moves_each_share_less_than_one_unit(
    total: int, weights: list[int]
) -> None:
    shares = allocate_largest_remainder(total, weights)
    assert sum(shares) == total
    weight_sum = sum(weights)
    for share, weight in zip(shares, weights, strict=True):
        assert total * weight // weight_sum <= share <= -(-total * weight // weight_sum)


@FAST
@given(st.integers(0, 10**6), st.lists(st.integers(1, 31), min_size=1, max_size=40))
def test_largest_remainder_does_not_depend_on_the_order_of_the_lines(total: int, days: list[int]) -> None:
    keys = [f"KEY-{position:03d}" for position in range(len(days))]
    shares = dict(zip(keys, allocate_largest_remainder(total, days, keys), strict=True))
    reversed_shares = allocate_largest_remainder(total, days[::-1], keys[::-1])
    assert dict(zip(keys[::-1], reversed_shares, strict=True)) == shares


@FAST
@given(st.integers(-(10**12), 10**12), st.integers(1, 10**7))
def test_round_half_up_is_within_half_a_unit_and_rounds_halves_away_from_zero(
    numerator: int, denominator: int
) -> None:
    rounded = round_half_up(numerator, denominator)
    distance = abs(rounded * denominator - numerator) * 2
    assert distance <= denominator
    if distance == denominator:
        assert abs(rounded * denominator) > abs(numerator)


def test_midnights_are_utc_instants_of_local_midnight() -> None:
    midnight = BillingMonth(2026, 3).midnights("Europe/Paris")[0]
    assert midnight.tzinfo is UTC
    assert midnight == datetime.combine(date(2026, 3, 1), time(0), ZoneInfo("Europe/Paris"))
