"""SQLite connections whose statements cost one trip each to aiosqlite's thread.

aiosqlite runs every call on its connection's own thread: a trip there and back is a queue put, a
thread wake-up and a wake-up of the event loop. SQLAlchemy's aiosqlite adapter makes four trips per
statement (create a cursor, execute, fetch the rows, close the cursor) and the read-only transaction
around a query's reads three more for its `BEGIN`. Here a statement is one trip: the cursor is created,
run, read to its end and closed on the thread, and what SQLAlchemy asks afterwards (the rows, the
description, the row count) is answered from what came back. Statements are small (pages are capped
at 100 rows), so reading every row at once is what SQLAlchemy's buffered cursor did anyway.

Built on aiosqlite's `Connection` and `Cursor` (0.20-0.22): their `_execute` (one trip) and `_conn`
(the sqlite3 connection, used only on the thread) are not public;
`test_a_page_on_sqlite_costs_one_trip_to_its_thread_per_statement` (tests/integration/
test_license_listing.py) fails if they change.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import aiosqlite
from sqlalchemy import Dialect, Select, make_url
from sqlalchemy.ext.asyncio import AsyncConnection


class OneTripCursor(aiosqlite.Cursor):
    """A cursor whose sqlite3 cursor lives only within one trip: execute, fetch everything, close."""

    _conn: OneTripConnection

    def __init__(self, conn: OneTripConnection) -> None:
        self.iter_chunk_size = conn._iter_chunk_size
        self._conn = conn
        self._rows: list[Any] = []
        self._closed_cursor: sqlite3.Cursor | None = None

    @property
    def _cursor(self) -> sqlite3.Cursor:  # type: ignore[override]
        # The attributes read after a trip (description, rowcount, lastrowid) stay readable on a
        # closed sqlite3 cursor.
        if self._closed_cursor is None:
            raise sqlite3.ProgrammingError("the cursor has not run a statement")
        return self._closed_cursor

    @_cursor.setter
    def _cursor(self, cursor: sqlite3.Cursor) -> None:
        self._closed_cursor = cursor

    async def execute(self, sql: str, parameters: Any = None) -> OneTripCursor:
        connection = self._conn
        begin = connection.take_pending_begin()

        def run() -> tuple[sqlite3.Cursor, list[Any]]:
            if begin is not None:
                connection._conn.execute(begin)
            cursor = connection._conn.cursor()
            try:
                cursor.execute(sql, () if parameters is None else parameters)
                return cursor, cursor.fetchall() if cursor.description else []
            finally:
                cursor.close()

        self._closed_cursor, rows = await connection._execute(run)
        self._rows = rows
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> OneTripCursor:
        connection = self._conn
        begin = connection.take_pending_begin()

        def run() -> sqlite3.Cursor:
            if begin is not None:
                connection._conn.execute(begin)
            cursor = connection._conn.cursor()
            try:
                cursor.executemany(sql, parameters)
                return cursor
            finally:
                cursor.close()

        self._closed_cursor = await connection._execute(run)
        self._rows = []
        return self

    async def executescript(self, sql_script: str) -> OneTripCursor:
        raise NotImplementedError("scripts are run by migrations, over a synchronous connection")

    async def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        count = self.arraysize if size is None else size
        taken, self._rows = self._rows[:count], self._rows[count:]
        return taken

    async def fetchall(self) -> list[Any]:
        taken, self._rows = self._rows, []
        return taken

    async def close(self) -> None:
        self._rows = []

    @property
    def arraysize(self) -> int:
        return 1 if self._closed_cursor is None else self._closed_cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value


class OneTripConnection(aiosqlite.Connection):
    """An aiosqlite connection handing out one-trip cursors (creating one costs no trip), whose `BEGIN`
    rides with the transaction's first statement and whose commit or rollback of no transaction (the
    pool's reset after a unit of work ended its own) costs no trip."""

    _pending_begin: str | None = None

    def begin_with_next_statement(self, begin: str) -> None:
        """Open the transaction (`BEGIN` or `BEGIN IMMEDIATE`) in the same trip as its first statement:
        SQLite takes a deferred transaction's snapshot at its first read anyway, and an immediate one
        waits for the write lock before that statement runs either way."""
        self._pending_begin = begin

    def take_pending_begin(self) -> str | None:
        begin, self._pending_begin = self._pending_begin, None
        return begin

    async def commit(self) -> None:
        if self.take_pending_begin() is None and self.in_transaction:
            await super().commit()

    async def rollback(self) -> None:
        if self.take_pending_begin() is None and self.in_transaction:
            await super().rollback()

    def cursor(self) -> OneTripCursor:  # type: ignore[override]
        # SQLAlchemy enters the cursor (`async with`) rather than awaiting `cursor()`.
        return OneTripCursor(self)


def one_trip_creator(url: str, **connect_args: Any) -> Any:
    """`create_async_engine(async_creator=...)` for a sqlite+aiosqlite URL: opens a OneTripConnection
    on the URL's file with sqlite3's `connect_args` (the thread is a daemon, as SQLAlchemy makes it)."""
    database = make_url(url).database or ":memory:"

    def open_connection() -> sqlite3.Connection:
        return sqlite3.connect(database, **connect_args)

    def create() -> OneTripConnection:
        connection = OneTripConnection(open_connection, 64)
        connection._thread.daemon = True
        return connection

    return create


@dataclass(frozen=True)
class _CompiledRead:
    sql: str
    # The parameters in placeholder order: name, the value when the statement fixes it (an OFFSET 0),
    # and the type's bind processor.
    parameters: Sequence[tuple[str, Any, Callable[[Any], Any] | None]]
    # The columns whose driver values are converted when read (instants), with their result
    # processors; NULL stays None without a call (the types read this way map NULL to None).
    processed: Sequence[tuple[int, Callable[[Any], Any]]]

    @classmethod
    def of(cls, statement: Select[Any], dialect: Dialect) -> _CompiledRead:
        compiled = statement.compile(dialect=dialect)
        # A processor per name (a tuple-valued parameter would have a sequence: none is read this way).
        binds, processors = compiled.binds, cast(Mapping[str, Any], compiled._bind_processors)
        return cls(
            sql=compiled.string,
            parameters=[
                (name, binds[name].value, processors.get(name)) for name in compiled.positiontup or []
            ],
            processed=[
                (position, process)
                for position, column in enumerate(statement.selected_columns)
                if (process := column.type._cached_result_processor(dialect, None)) is not None
            ],
        )

    def bound(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        bound = []
        for name, fixed, process in self.parameters:
            value = values.get(name, fixed)
            bound.append(value if process is None else process(value))
        return tuple(bound)


class PreparedRead:
    """A SELECT read on every request (a page of licenses), built once and compiled once per dialect.

    On SQLite it runs straight through the connection's one-trip cursor, inside the transaction
    SQLAlchemy began: SQLAlchemy's execution context, its compiled-cache lookup (a cache key computed
    from the statement's tree on every call) and its Row objects are skipped, about a third of the
    statement's cost on a page of 100 licenses. Its rows are lists, each column's result type
    applied (instants parsed), read by position. `before_cursor_execute` and `after_cursor_execute`
    listeners still see the SQL (the statement counters and timers of tests and benches; what they
    return is not used). A driver error is
    sqlite3's own, not wrapped by SQLAlchemy. On other databases it runs through SQLAlchemy like
    any statement, with the same rows."""

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement
        self._compiled: dict[str, _CompiledRead] = {}

    async def rows(self, connection: AsyncConnection, values: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        driver = (await connection.get_raw_connection()).driver_connection
        if not isinstance(driver, OneTripConnection):
            return (await connection.execute(self.statement, values)).all()
        compiled = self._compiled.get(connection.dialect.name)
        if compiled is None:
            compiled = self._compiled[connection.dialect.name] = _CompiledRead.of(
                self.statement, connection.dialect
            )
        parameters = compiled.bound(values)
        cursor = driver.cursor()
        synchronous = connection.sync_connection
        if synchronous is not None and synchronous.dispatch.before_cursor_execute:
            synchronous.dispatch.before_cursor_execute(
                synchronous, cursor, compiled.sql, parameters, None, False
            )
        await cursor.execute(compiled.sql, parameters)
        rows = [list(row) for row in await cursor.fetchall()]
        if synchronous is not None and synchronous.dispatch.after_cursor_execute:
            synchronous.dispatch.after_cursor_execute(
                synchronous, cursor, compiled.sql, parameters, None, False
            )
        for position, process in compiled.processed:
            for row in rows:
                if row[position] is not None:
                    row[position] = process(row[position])
        return rows
