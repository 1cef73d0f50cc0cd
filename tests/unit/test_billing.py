"""The billing FAQ, as examples: which days a license is billed for and what they cost."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from domain.billing import (
    BillingMonth,
    Holding,
    allocate_largest_remainder,
    billed_days,
    build_statement,
    count_license_days,
    license_days,
    price_in_minor_units,
    round_half_up,
)
from domain.errors import DomainError, ErrorCode
from domain.products import MAX_DAILY_PRICE_MICROS, new_price

JULY = BillingMonth(2026, 7)
PRICE = 328767  # USD 0.328767 per day
USD = 2


def at(day: int, hour: int = 12, month: int = 7) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def holding(
    held_from: datetime,
    held_until: datetime | None = None,
    *,
    by_transfer: bool = False,
    key: str = "KEY-1",
    site: str | None = None,
    product: str = "backup",
    holding_id: str | None = None,
) -> Holding:
    return Holding(
        id=holding_id or f"hld-{key}-{held_from.isoformat()}",
        key=key,
        product_slug=product,
        site=site,
        held_from=held_from,
        held_until=held_until,
        ended_by_transfer=by_transfer,
    )


# --- Which days are billed -------------------------------------------------------------------------------


def test_license_issued_and_never_assigned_is_billed_every_day() -> None:
    never_assigned = holding(at(1, 0), site=None)
    assert license_days(never_assigned, JULY, "UTC") == 31


def test_license_issued_before_july_and_revoked_on_july_10_bills_10_july_days() -> None:
    assert license_days(holding(at(15, month=5), at(10)), JULY, "UTC") == 10


def test_license_issued_june_20_and_revoked_july_10_bills_10_july_days() -> None:
    license = holding(at(20, month=6), at(10, 9))
    assert license_days(license, JULY, "UTC") == 10
    assert license_days(license, BillingMonth(2026, 6), "UTC") == 11  # June 20..30


def test_license_issued_and_revoked_on_the_same_day_bills_1_day() -> None:
    assert license_days(holding(at(14, 9), at(14, 17)), JULY, "UTC") == 1


def test_license_issued_and_revoked_in_the_same_instant_bills_1_day() -> None:
    assert license_days(holding(at(14, 9), at(14, 9)), JULY, "UTC") == 1


def test_issue_day_counts_even_one_minute_before_midnight() -> None:
    late = datetime(2026, 7, 31, 23, 59, tzinfo=UTC)
    assert billed_days(holding(late), JULY, "UTC") == [date(2026, 7, 31)]


def test_transfer_day_is_billed_to_the_receiver_only() -> None:
    sender = holding(at(1, 0, month=6), at(10, 15), by_transfer=True)
    receiver = holding(at(10, 15), holding_id="hld-receiver")
    assert billed_days(sender, JULY, "UTC")[-1] == date(2026, 7, 9)
    assert billed_days(receiver, JULY, "UTC")[0] == date(2026, 7, 10)
    assert license_days(sender, JULY, "UTC") + license_days(receiver, JULY, "UTC") == 31


def test_license_issued_and_transferred_out_the_same_day_bills_the_sender_nothing() -> None:
    assert license_days(holding(at(5, 8), at(5, 20), by_transfer=True), JULY, "UTC") == 0


def test_key_passed_a_to_b_and_back_within_one_day_bills_that_day_once_to_the_last_holder() -> None:
    first_a = holding(at(1, 0), at(5, 9), by_transfer=True, holding_id="a1")
    b = holding(at(5, 9), at(5, 17), by_transfer=True, holding_id="b")
    second_a = holding(at(5, 17), holding_id="a2")
    assert [license_days(h, JULY, "UTC") for h in (first_a, b, second_a)] == [4, 0, 27]


def test_transfer_received_then_revoked_the_same_day_bills_the_receiver_that_day() -> None:
    sender = holding(at(1, 0), at(5, 9), by_transfer=True)
    receiver = holding(at(5, 9), at(5, 17), holding_id="receiver")
    assert license_days(sender, JULY, "UTC") == 4
    assert billed_days(receiver, JULY, "UTC") == [date(2026, 7, 5)]


def test_revoked_at_midnight_bills_the_day_that_midnight_starts() -> None:
    license = holding(at(1, 0, month=6), datetime(2026, 7, 10, 0, 0, tzinfo=UTC))
    assert license_days(license, JULY, "UTC") == 10


def test_days_are_counted_on_the_partners_calendar() -> None:
    # 23:30 UTC on July 9 is already July 10 in Paris (UTC+2 in summer).
    revoked = holding(at(1, 0, month=6), datetime(2026, 7, 9, 23, 30, tzinfo=UTC))
    assert license_days(revoked, JULY, "UTC") == 9
    assert license_days(revoked, JULY, "Europe/Paris") == 10


def test_active_license_is_estimated_to_the_end_of_the_month() -> None:
    assert license_days(holding(at(20)), JULY, "UTC") == 12  # July 20..31


def test_license_revoked_before_the_month_or_issued_after_it_bills_nothing() -> None:
    assert license_days(holding(at(1, month=5), at(30, month=6)), JULY, "UTC") == 0
    assert license_days(holding(at(1, month=8)), JULY, "UTC") == 0


def test_counting_many_licenses_at_once_agrees_with_one_by_one() -> None:
    licenses = [
        holding(at(20, month=6), at(10)),
        holding(at(5), at(5)),
        holding(at(3), at(9), by_transfer=True),
    ]
    assert count_license_days(licenses, JULY, "Europe/Paris") == [
        license_days(license, JULY, "Europe/Paris") for license in licenses
    ]


def test_holding_that_ends_before_it_starts_is_refused() -> None:
    with pytest.raises(ValueError):
        holding(at(10), at(9))


# --- Months ----------------------------------------------------------------------------------------------


def test_month_is_read_from_yyyy_mm() -> None:
    assert BillingMonth.parse("2026-07") == JULY
    assert str(JULY) == "2026-07"


@pytest.mark.parametrize(
    "text",
    ["2026-7", "2026-13", "2026-00", "July 2026", "2026-07-01", "", "\u0661\u0662\u0663\u0664-\u0660\u0667"],
)
def test_malformed_month_is_refused_on_the_month_field(text: str) -> None:
    with pytest.raises(DomainError) as refused:
        BillingMonth.parse(text)
    assert refused.value.code is ErrorCode.INVALID_INPUT
    assert refused.value.field == "month"


def test_month_bounds_are_local_midnights_in_utc() -> None:
    start, end = JULY.bounds("Europe/Paris")
    assert start == datetime(2026, 6, 30, 22, 0, tzinfo=UTC)
    assert end == datetime(2026, 7, 31, 22, 0, tzinfo=UTC)


def test_lord_howe_midnights_follow_its_half_hour_dst_shift() -> None:
    midnights = BillingMonth(2026, 4).midnights("Australia/Lord_Howe")
    # DST (UTC+11) ends on Sunday April 5, 2026 at 02:00, back to UTC+10:30.
    assert midnights[4] == datetime(2026, 4, 4, 13, 0, tzinfo=UTC)
    assert midnights[5] == datetime(2026, 4, 5, 13, 30, tzinfo=UTC)
    assert len(midnights) == 31


def test_month_containing_an_instant_is_the_partners_month() -> None:
    instant = datetime(2026, 7, 31, 23, 0, tzinfo=UTC)
    assert BillingMonth.containing(instant, "UTC") == JULY
    assert BillingMonth.containing(instant, "Europe/Paris") == BillingMonth(2026, 8)


def test_months_step_across_years() -> None:
    assert BillingMonth(2026, 12).next() == BillingMonth(2027, 1)
    assert BillingMonth(2027, 1).previous() == BillingMonth(2026, 12)


def test_month_not_over_in_the_partners_zone_cannot_be_closed() -> None:
    end_in_paris = datetime(2026, 7, 31, 22, 0, tzinfo=UTC)
    with pytest.raises(DomainError) as refused:
        JULY.require_over(datetime(2026, 7, 31, 21, 59, tzinfo=UTC), "Europe/Paris")
    assert (refused.value.code, refused.value.field) == (ErrorCode.MONTH_NOT_OVER, "month")
    JULY.require_over(end_in_paris, "Europe/Paris")


def test_future_month_cannot_be_closed() -> None:
    with pytest.raises(DomainError):
        BillingMonth(2026, 9).require_over(at(15), "UTC")


# --- Money -----------------------------------------------------------------------------------------------


def test_license_active_all_july_costs_31_times_the_daily_price_before_rounding() -> None:
    statement = build_statement([holding(at(1, 0, month=1))], {"backup": PRICE}, JULY, "UTC", USD)
    (line,) = statement.product_lines
    assert line.license_days == 31
    assert line.exact_amount_micros == 31 * PRICE  # USD 10.191777
    assert line.amount == 1019  # cents


@pytest.mark.parametrize(
    ("numerator", "denominator", "rounded"),
    [(5, 10, 1), (4, 10, 0), (15, 10, 2), (25, 10, 3), (-25, 10, -3), (0, 7, 0), (1_000_000, 1_000_000, 1)],
)
def test_rounding_is_half_up(numerator: int, denominator: int, rounded: int) -> None:
    assert round_half_up(numerator, denominator) == rounded


def test_half_a_cent_is_rounded_up() -> None:
    assert price_in_minor_units(1, 5_000, USD) == 1  # USD 0.005 -> 1 cent
    assert price_in_minor_units(1, 4_999, USD) == 0


def test_yen_has_no_minor_unit() -> None:
    assert price_in_minor_units(31, 500_000, 0) == 16  # JPY 15.5 -> 16


def test_day_lines_add_up_exactly_to_their_product_line() -> None:
    licenses = [holding(at(day), key=f"KEY-{day:02d}") for day in range(1, 8)]
    statement = build_statement(licenses, {"backup": 333_333}, JULY, "UTC", USD)
    (line,) = statement.product_lines
    assert line.amount == round_half_up(line.license_days * 333_333 * 100, 1_000_000)
    assert sum(day_line.amount for day_line in statement.day_lines) == line.amount
    assert statement.total == line.amount


def test_left_over_cents_go_to_the_largest_remainders_then_the_smallest_key() -> None:
    assert allocate_largest_remainder(10, [1, 1, 1]) == [4, 3, 3]
    assert allocate_largest_remainder(10, [1, 1, 1], ["c", "a", "b"]) == [3, 4, 3]
    assert allocate_largest_remainder(7, [2, 3, 5]) == [1, 2, 4]  # remainders 0.4, 0.1, 0.5
    assert allocate_largest_remainder(0, [0, 0]) == [0, 0]


def test_assigned_and_unassigned_costs_add_up_to_the_total() -> None:
    licenses = [
        holding(at(1, 0), key="KEY-A", site="https://a.example"),
        holding(at(1, 0), key="KEY-B", site=None),
        holding(at(1, 0), key="KEY-C", site="https://c.example", product="scan"),
    ]
    statement = build_statement(licenses, {"backup": 333_333, "scan": 111_111}, JULY, "UTC", USD)
    assert statement.costs.assigned + statement.costs.unassigned == statement.total
    assert statement.costs.unassigned == 1033  # KEY-B's share of backup's 2067 cents (KEY-A gets 1034)
    assert (statement.counts.assigned, statement.counts.unassigned, statement.counts.total) == (2, 1, 3)


def test_statement_has_one_line_per_product_and_no_line_for_licenses_without_days() -> None:
    licenses = [
        holding(at(1, 0), key="KEY-A", product="scan"),
        holding(at(3), at(5), key="KEY-B", product="backup"),
        holding(at(1, month=5), at(1, month=6), key="KEY-OLD", product="backup"),
    ]
    statement = build_statement(licenses, {"backup": PRICE, "scan": 54_794}, JULY, "UTC", USD)
    assert [(line.product_slug, line.license_days) for line in statement.product_lines] == [
        ("backup", 3),
        ("scan", 31),
    ]
    assert [day_line.key for day_line in statement.day_lines] == ["KEY-B", "KEY-A"]
    assert statement.license_days == 34


def test_key_held_twice_in_a_month_is_one_license_with_two_day_lines() -> None:
    licenses = [
        holding(at(1, 0), at(10), by_transfer=True, site="https://a.example", holding_id="a1"),
        # Another partner holds it July 10-19; that holding is on the other partner's statement.
        holding(at(20), site=None, holding_id="a2"),
    ]
    statement = build_statement(licenses, {"backup": PRICE}, JULY, "UTC", USD)
    assert [(day_line.holding_id, day_line.days) for day_line in statement.day_lines] == [
        ("a1", 9),
        ("a2", 12),
    ]
    assert statement.counts.total == 1
    assert statement.counts.unassigned == 1  # classified by its latest holding


def test_product_without_a_price_is_refused() -> None:
    with pytest.raises(DomainError) as refused:
        build_statement([holding(at(1))], {}, JULY, "UTC", USD)
    assert refused.value.code is ErrorCode.PRICE_NOT_AVAILABLE


def test_empty_month_costs_nothing() -> None:
    statement = build_statement([], {"backup": PRICE}, JULY, "UTC", USD)
    assert (statement.total, statement.product_lines, statement.day_lines) == (0, (), ())


def test_a_daily_price_of_more_than_a_million_units_is_refused_as_a_typo() -> None:
    assert new_price("backup", "JPY", MAX_DAILY_PRICE_MICROS, date(2026, 7, 1)).currency == "jpy"
    with pytest.raises(DomainError) as refused:
        new_price("backup", "usd", MAX_DAILY_PRICE_MICROS + 1, date(2026, 7, 1))
    assert (refused.value.code, refused.value.field) == (ErrorCode.INVALID_INPUT, "dailyPriceMicros")
