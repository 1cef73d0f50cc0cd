from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from domain.clock import LATEST_SANDBOX_INSTANT, SettableClock
from domain.errors import DomainError, ErrorCode


def test_settable_clock_moves_forward_and_reports_utc() -> None:
    clock = SettableClock(datetime(2026, 7, 1, tzinfo=UTC))
    clock.advance_to(datetime(2026, 7, 2, 2, 0, tzinfo=timezone(timedelta(hours=2))))
    assert clock.now() == datetime(2026, 7, 2, 0, 0, tzinfo=UTC)
    assert clock.now().tzinfo is UTC


def test_settable_clock_refuses_to_go_back() -> None:
    clock = SettableClock(datetime(2026, 7, 10, tzinfo=UTC))
    with pytest.raises(DomainError) as refused:
        clock.advance_to(datetime(2026, 7, 9, tzinfo=UTC))
    assert refused.value.code is ErrorCode.CLOCK_BACKWARDS


def test_naive_instants_are_refused() -> None:
    with pytest.raises(DomainError):
        SettableClock(datetime(2026, 7, 1))


def test_the_clock_moves_at_most_ten_years_at_a_time() -> None:
    clock = SettableClock(datetime(2026, 7, 1, 9, 0, tzinfo=UTC))
    clock.advance_to(datetime(2036, 7, 1, 9, 0, tzinfo=UTC))
    with pytest.raises(DomainError) as refused:
        clock.advance_to(datetime(2046, 7, 1, 9, 0, 1, tzinfo=UTC))
    assert (refused.value.code, refused.value.field) == (ErrorCode.INVALID_INPUT, "to")
    assert clock.now() == datetime(2036, 7, 1, 9, 0, tzinfo=UTC)


def test_ten_years_from_the_29th_of_february_is_the_28th() -> None:
    clock = SettableClock(datetime(2028, 2, 29, tzinfo=UTC))
    assert clock.latest_target() == datetime(2038, 2, 28, tzinfo=UTC)


@pytest.mark.parametrize(
    "start", [datetime(8995, 3, 1, tzinfo=UTC), LATEST_SANDBOX_INSTANT, datetime(9995, 1, 1, tzinfo=UTC)]
)
def test_the_clock_never_moves_past_the_year_9000(start: datetime) -> None:
    clock = SettableClock(start)
    with pytest.raises(DomainError) as refused:
        clock.advance_to(datetime(9999, 12, 31, tzinfo=UTC))
    assert refused.value.code is ErrorCode.INVALID_INPUT
    assert clock.now() == start


def test_an_instant_beyond_the_last_utc_year_is_invalid_input() -> None:
    clock = SettableClock(datetime(2026, 7, 1, tzinfo=UTC))
    with pytest.raises(DomainError) as refused:
        clock.advance_to(datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5))))
    assert refused.value.code is ErrorCode.INVALID_INPUT
