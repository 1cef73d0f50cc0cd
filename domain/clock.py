"""Time as the rules see it: an injected clock that returns timezone-aware UTC instants."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Protocol

from domain.errors import DomainError, ErrorCode

# The sandbox clock moves at most ten years at a time and never past 9000-01-01: every date the rules
# compute from "now" (month ends, due dates, dunning days, transfer expiry) then stays far inside
# datetime's range, which ends with the year 9999.
MAX_SANDBOX_ADVANCE_YEARS = 10
LATEST_SANDBOX_INSTANT = datetime(9000, 1, 1, tzinfo=UTC)


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

    def latest_target(self) -> datetime:
        """How far the clock may move from where it stands."""
        if self._now.year + MAX_SANDBOX_ADVANCE_YEARS >= LATEST_SANDBOX_INSTANT.year:
            return max(self._now, LATEST_SANDBOX_INSTANT)
        return years_later(self._now, MAX_SANDBOX_ADVANCE_YEARS)

    def advance_to(self, instant: datetime) -> None:
        """Move forward to `instant`: never back (CLOCK_BACKWARDS), never beyond `latest_target`."""
        instant = as_utc(instant, field="to")
        if instant < self._now:
            raise DomainError(
                ErrorCode.CLOCK_BACKWARDS,
                f"The sandbox clock is at {self._now.isoformat()}; it only moves forward.",
                field="to",
            )
        latest = self.latest_target()
        if instant > latest:
            raise DomainError(
                ErrorCode.INVALID_INPUT,
                f"The sandbox clock moves at most {MAX_SANDBOX_ADVANCE_YEARS} years at a time and never past "
                f"{LATEST_SANDBOX_INSTANT.isoformat()}; the latest it can reach now is {latest.isoformat()}.",
                field="to",
            )
        self._now = instant


def years_later(instant: datetime, years: int) -> datetime:
    """The same moment `years` calendar years later (29 February becomes the 28th)."""
    try:
        return instant.replace(year=instant.year + years)
    except ValueError:
        return instant.replace(year=instant.year + years, day=28)


def as_utc(instant: datetime, field: str | None = None) -> datetime:
    """Return the instant in UTC; naive datetimes are refused because their meaning is unknown."""
    if instant.tzinfo is None:
        raise DomainError(ErrorCode.INVALID_INPUT, "Instants must carry a time zone offset.", field)
    try:
        return instant.astimezone(UTC)
    except OverflowError as error:  # 9999-12-31T23:00-05:00 is in the year 10000 in UTC
        raise DomainError(
            ErrorCode.INVALID_INPUT, "The instant is outside the years 1 to 9999 in UTC.", field
        ) from error
