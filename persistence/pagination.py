"""Keyset pagination: opaque cursors over a stable sort key, pages capped at 100."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, Row, Select, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.errors import DomainError, ErrorCode

T = TypeVar("T")

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: each item with its cursor, whether more follow, and the size of the whole list."""

    items: list[tuple[str, T]]
    has_next_page: bool
    has_previous_page: bool
    total_count: int


def page_size(first: int | None) -> int:
    if first is None:
        return DEFAULT_PAGE_SIZE
    if not 1 <= first <= MAX_PAGE_SIZE:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"'first' must be between 1 and {MAX_PAGE_SIZE}.", field="first"
        )
    return first


def encode_cursor(values: Sequence[Any]) -> str:
    encoded = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(encoded).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as error:
        raise DomainError(
            ErrorCode.INVALID_INPUT, "'after' is not a cursor from this list.", "after"
        ) from error
    if not isinstance(values, list) or len(values) != arity:
        raise DomainError(ErrorCode.INVALID_INPUT, "'after' is not a cursor from this list.", "after")
    return values


@dataclass(frozen=True)
class SortKey:
    """The columns a list is ordered by; the last one must be unique so the order is total."""

    columns: Sequence[ColumnElement[Any]]
    descending: bool = False
    # How to turn a cursor's JSON values back into column values (e.g. ISO text → datetime).
    parsers: Sequence[Callable[[Any], Any]] | None = None

    def after(self, values: list[Any]) -> ColumnElement[bool]:
        """Rows strictly past the cursor in this order (expanded OR form: works where NULL-free)."""
        if self.parsers:
            values = [parse(v) for parse, v in zip(self.parsers, values, strict=True)]
        clauses = []
        for index, column in enumerate(self.columns):
            equal_prefix = [c == v for c, v in zip(self.columns[:index], values[:index], strict=True)]
            beyond = column < values[index] if self.descending else column > values[index]
            clauses.append(and_(*equal_prefix, beyond))
        return or_(*clauses)

    def order_by(self) -> list[Any]:
        return [c.desc() if self.descending else c.asc() for c in self.columns]


async def keyset_page(
    connection: AsyncConnection,
    statement: Select[Any],
    sort: SortKey,
    *,
    first: int | None,
    after: str | None,
    to_item: Callable[[Row[Any]], T],
    cursor_values: Callable[[Row[Any]], Sequence[Any]],
) -> Page[T]:
    """Run `statement` as one page: at most `first` rows past `after`, plus the total count."""
    size = page_size(first)
    total = (
        await connection.execute(select(func.count()).select_from(statement.order_by(None).subquery()))
    ).scalar_one()
    paged = statement
    if after is not None:
        paged = paged.where(sort.after(decode_cursor(after, len(sort.columns))))
    rows = (await connection.execute(paged.order_by(*sort.order_by()).limit(size + 1))).all()
    items = [(encode_cursor(cursor_values(row)), to_item(row)) for row in rows[:size]]
    return Page(
        items=items,
        has_next_page=len(rows) > size,
        has_previous_page=after is not None,
        total_count=int(total),
    )


def parse_instant(value: Any) -> datetime:
    return datetime.fromisoformat(value)
