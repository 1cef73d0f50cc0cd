"""Keyset pagination: opaque cursors over a stable sort key, pages capped at 100."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar, overload

from sqlalchemy import ColumnElement, Integer, Select, bindparam, func, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.errors import DomainError, ErrorCode
from persistence.sqlite_connections import PreparedRead

T = TypeVar("T")

MAX_PAGE_SIZE = 100
# The label of the whole list's count: a counted page's last column.
PAGE_TOTAL = "page_total_count"
DEFAULT_PAGE_SIZE = 20


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: each item with its cursor, whether more follow, and the size of the whole list
    (None when it was not asked for: counting a long list costs more than reading a page of it)."""

    items: Sequence[tuple[str, T]]
    has_next_page: bool
    has_previous_page: bool
    total_count: int | None


class CursoredItems(Sequence[tuple[str, T]]):
    """A page's items with their cursors, each cursor encoded only when it is read (a page listed
    without `edges` reads two: the first and the last)."""

    def __init__(self, items: list[T], values: list[Sequence[Any]], codec: CursorCodec) -> None:
        self.nodes = items
        self._values = values
        self._codec = codec
        self._cursors: dict[int, str] = {}

    def cursor(self, index: int) -> str:
        index = range(len(self.nodes))[index]
        known = self._cursors.get(index)
        if known is None:
            known = self._cursors[index] = self._codec.encode(self._values[index])
        return known

    def __len__(self) -> int:
        return len(self.nodes)

    @overload
    def __getitem__(self, index: int) -> tuple[str, T]: ...
    @overload
    def __getitem__(self, index: slice) -> list[tuple[str, T]]: ...
    def __getitem__(self, index: int | slice) -> tuple[str, T] | list[tuple[str, T]]:
        if isinstance(index, slice):
            return [(self.cursor(i), self.nodes[i]) for i in range(len(self.nodes))[index]]
        return self.cursor(index), self.nodes[index]


def page_nodes(page: Page[T]) -> list[T]:
    """A page's items without their cursors (none is encoded)."""
    if isinstance(page.items, CursoredItems):
        return page.items.nodes
    return [item for _, item in page.items]


def page_size(first: int | None) -> int:
    if first is None:
        return DEFAULT_PAGE_SIZE
    if not 1 <= first <= MAX_PAGE_SIZE:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"'first' must be between 1 and {MAX_PAGE_SIZE}.", field="first"
        )
    return first


# The largest value a cursor position may carry: SQL INTEGER on both databases.
MAX_POSITION = 2**31 - 1
MAX_KEY_LENGTH = 128
MAX_TEXT_LENGTH = 256


def cursor_instant(value: Any) -> datetime:
    """An ISO-8601 instant with its offset, as this service writes them."""
    if not isinstance(value, str) or len(value) > 40:
        raise ValueError("not an instant")
    instant = datetime.fromisoformat(value)
    if instant.tzinfo is None:
        raise ValueError("an instant needs its offset")
    return instant


def cursor_key(value: Any) -> str:
    """A row's id: printable text of bounded length."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_KEY_LENGTH or not value.isprintable():
        raise ValueError("not a key")
    return value


def cursor_text(value: Any) -> str:
    """A sort value that is text (a name): printable, bounded, possibly empty."""
    if not isinstance(value, str) or len(value) > MAX_TEXT_LENGTH or not value.isprintable():
        raise ValueError("not a name")
    return value


def cursor_position(value: Any) -> int:
    """A position in a fixed order: a whole number within SQL INTEGER."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_POSITION:
        raise ValueError("not a position")
    return value


@dataclass(frozen=True)
class CursorCodec:
    """The cursors of one list: tagged with the list's name, every value checked against its kind.

    A cursor is base64url(JSON [list_name, value, ...]). Decoding refuses anything this list did not
    write (another list's cursor, wrong arity, wrong types, out-of-range numbers) with INVALID_INPUT
    on `field`, so no hand-made cursor reaches SQL.
    """

    list_name: str
    kinds: Sequence[Callable[[Any], Any]]
    field: str = "after"
    # How the refusal names what the cursor should have come from.
    source: str = "list"

    def encode(self, values: Sequence[Any]) -> str:
        encoded = [v.isoformat() if isinstance(v, datetime) else v for v in values]
        payload = json.dumps([self.list_name, *encoded], separators=(",", ":"))
        return base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")

    def decode(self, cursor: str) -> list[Any]:
        """The cursor's values, parsed by their kinds; INVALID_INPUT for anything else."""
        message = f"'{self.field}' is not a cursor from this {self.source}."
        problem = DomainError(ErrorCode.INVALID_INPUT, message, self.field)
        if len(cursor) > 512:
            raise problem
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            decoded = json.loads(base64.urlsafe_b64decode(padded.encode()))
        except (binascii.Error, ValueError, RecursionError) as error:
            raise problem from error
        if (
            not isinstance(decoded, list)
            or len(decoded) != len(self.kinds) + 1
            or decoded[0] != self.list_name
        ):
            raise problem
        try:
            return [parse(value) for parse, value in zip(self.kinds, decoded[1:], strict=True)]
        except ValueError as error:
            raise problem from error


@dataclass(frozen=True)
class SortKey:
    """The columns a list is ordered by; the last one must be unique so the order is total."""

    columns: Sequence[ColumnElement[Any]]
    cursor: CursorCodec
    descending: bool = False

    def after(self) -> ColumnElement[bool]:
        """Rows strictly past the cursor in this order, as one row-value comparison, `(a, b) < (?, ?)`
        (the sort columns hold no NULLs): SQLite and PostgreSQL seek the ordering index to the cursor,
        where the equivalent `a < ? OR (a = ? AND b < ?)` makes SQLite walk the index from its start.
        The cursor's values are parameters `cursor_0`, `cursor_1`, … (`cursor_parameters`), so a page
        statement can be built once and run with any cursor."""
        bound = [bindparam(f"cursor_{i}", type_=column.type) for i, column in enumerate(self.columns)]
        if len(bound) == 1:
            return self.columns[0] < bound[0] if self.descending else self.columns[0] > bound[0]
        left, right = tuple_(*self.columns), tuple_(*bound)
        return left < right if self.descending else left > right

    @staticmethod
    def cursor_parameters(values: list[Any]) -> dict[str, Any]:
        return {f"cursor_{i}": value for i, value in enumerate(values)}

    def order_by(self) -> list[Any]:
        return [c.desc() if self.descending else c.asc() for c in self.columns]


async def keyset_page(
    connection: AsyncConnection,
    statement: Select[Any],
    sort: SortKey,
    *,
    first: int | None,
    after: str | None,
    to_item: Callable[[Any], T],
    cursor_values: Callable[[Any], Sequence[Any]],
    count_total: bool = True,
    shape: Hashable | None = None,
    parameters: Mapping[str, Any] | None = None,
) -> Page[T]:
    """Run `statement` as one page: at most `first` rows past `after`, plus (if asked) the total count.

    One statement: the count of the whole list (`after` does not apply to it) rides along as a scalar
    subquery column of the page's rows; only a page with no rows asks for it again on its own.

    A list read on every request names its `shape` (the same `statement` and `sort` for the same shape,
    their values left as bound `parameters`): its page statements are then built once, since building
    one costs more than SQLite running it, and run as `PreparedRead`s: `to_item` and `cursor_values`
    then get lists, to read by position (otherwise SQLAlchemy Rows)."""
    size = page_size(first)
    values = dict(parameters or {}, page_limit=size + 1)
    if after is not None:
        values.update(sort.cursor_parameters(sort.cursor.decode(after)))
    key = (shape, after is not None, count_total)
    built = _BUILT_PAGES.get(key) if shape is not None else None
    if built is None:
        paged, count = _page_statements(statement, sort, after is not None, count_total)
        built = PreparedRead(paged), count
        if shape is not None:
            _BUILT_PAGES[key] = built
    prepared, count = built
    rows: Sequence[Sequence[Any]]
    if shape is None:  # a statement of its own (a filtered list): SQLAlchemy's own path
        rows = (await connection.execute(prepared.statement, values)).all()
    else:
        rows = await prepared.rows(connection, values)
    total = None
    if count_total:
        total = int(rows[0][-1] if rows else (await connection.execute(count, values)).scalar_one())
    kept = rows[:size]
    items = CursoredItems([to_item(row) for row in kept], [cursor_values(row) for row in kept], sort.cursor)
    return Page(
        items=items,
        has_next_page=len(rows) > size,
        has_previous_page=after is not None,
        total_count=total,
    )


# (shape, has a cursor, counted) -> the page statement and the count statement.
_BUILT_PAGES: dict[tuple[Hashable, bool, bool], tuple[PreparedRead, Select[Any]]] = {}


def _page_statements(
    statement: Select[Any], sort: SortKey, has_cursor: bool, count_total: bool
) -> tuple[Select[Any], Select[Any]]:
    paged = statement
    if has_cursor:
        paged = paged.where(sort.after())
    paged = paged.order_by(*sort.order_by()).limit(bindparam("page_limit", type_=Integer))
    # COUNT over the list's own FROM and WHERE (not over a subquery of its columns).
    count = statement.with_only_columns(func.count(), maintain_column_froms=True).order_by(None)
    if count_total:
        paged = paged.add_columns(count.scalar_subquery().correlate(None).label(PAGE_TOTAL))
    return paged, count
