"""Time as the rules see it: an injected clock that returns timezone-aware UTC instants."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from domain.errors import DomainError, ErrorCode


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock, in UTC."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class SettableClock:
    """A clock that stands still until moved forward: tests and sandbox mode use it."""

    def __init__(self, start: datetime) -> None:
        self._now = as_utc(start)

    def now(self) -> datetime:
        return self._now

    def advance_to(self, instant: datetime) -> None:
        instant = as_utc(instant)
        if instant < self._now:
            raise DomainError(
                ErrorCode.CLOCK_BACKWARDS,
                f"The sandbox clock is at {self._now.isoformat()}; it only moves forward.",
                field="to",
            )
        self._now = instant


def as_utc(instant: datetime) -> datetime:
    """Return the instant in UTC; naive datetimes are refused because their meaning is unknown."""
    if instant.tzinfo is None:
        raise DomainError(ErrorCode.INVALID_INPUT, "Instants must carry a time zone offset.")
    return instant.astimezone(UTC)
