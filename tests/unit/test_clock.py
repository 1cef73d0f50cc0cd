from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from domain.clock import SettableClock
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
