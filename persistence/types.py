"""Column types that keep the domain's invariants on both SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out; SQLite stores naive UTC text, PostgreSQL `timestamptz`."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass an aware UTC instant")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], datetime | None]:
        # SQLite hands instants back as text: one parse straight to an aware instant, where the
        # decorated DateTime's processor chain costs three calls per value (a page reads 500 of them).
        if dialect.name == "sqlite":
            return _sqlite_instant
        return super().result_processor(dialect, coltype)  # type: ignore[return-value]

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _sqlite_instant(value: str | None) -> datetime | None:
    """An instant as SQLite stores it (naive UTC text, `YYYY-MM-DD HH:MM:SS[.ffffff]`), made aware."""
    if value is None:
        return None
    try:
        # Parsed with its offset: the result's tzinfo is `UTC` itself (`replace` costs 5x the parse).
        return datetime.fromisoformat(value + "+00:00")
    except ValueError:  # text written with an offset of its own
        return datetime.fromisoformat(value).astimezone(UTC)
