"""The engine: SQLite by default, PostgreSQL when DATABASE_URL says so, tuned for each."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from persistence.feed import FeedSignal
from persistence.sqlite_connections import OneTripConnection, one_trip_creator

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./licensing.db"


def masked_url(url: str) -> str:
    """The URL as it may be printed or logged: the password, if any, is `***`."""
    return make_url(url).render_as_string(hide_password=True)


class Database:
    """Owns the engine. Writers on SQLite take the write lock at BEGIN (`BEGIN IMMEDIATE`)."""

    def __init__(self, url: str = DEFAULT_DATABASE_URL, *, echo: bool = False) -> None:
        self.url = url
        self.engine: AsyncEngine = create_async_engine(url, echo=echo, **_engine_options(url))
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            _serialize_sqlite_writers(self.engine)
        # Readers never take SQLite's write lock: a query must not queue behind a month close.
        self.read_engine: AsyncEngine = self.engine.execution_options(read_only=True)
        # Wakes this process's event-feed readers after a commit that recorded events.
        self.signal = FeedSignal()

    @property
    def is_sqlite(self) -> bool:
        return self.dialect == "sqlite"

    async def is_reachable(self) -> bool:
        try:
            async with self.read_engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    async def dispose(self) -> None:
        await self.engine.dispose()


def _engine_options(url: str) -> dict[str, Any]:
    if url.startswith("sqlite"):
        # One trip to aiosqlite's thread per statement instead of four (persistence/sqlite_connections.py).
        return {"async_creator": one_trip_creator(url, timeout=30)}
    return {"pool_size": 10, "max_overflow": 20, "pool_pre_ping": True}


def _serialize_sqlite_writers(engine: AsyncEngine) -> None:
    """Let us issue BEGIN ourselves so writers use BEGIN IMMEDIATE (SQLAlchemy's documented recipe)."""

    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: Any) -> None:
        read_only = connection.get_execution_options().get("read_only", False)
        begin = "BEGIN" if read_only else "BEGIN IMMEDIATE"
        driver = connection.connection.driver_connection
        if isinstance(driver, OneTripConnection):
            driver.begin_with_next_statement(begin)  # no trip of its own
        else:
            connection.exec_driver_sql(begin)
