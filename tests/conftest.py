"""Shared fixtures: a migrated database (SQLite file, or PostgreSQL when DATABASE_URL is set)."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from domain.clock import SettableClock
from persistence import migrate
from persistence.database import Database

POSTGRES_URL = os.environ.get("DATABASE_URL", "")
ON_POSTGRES = POSTGRES_URL.startswith("postgresql")


SCRATCH_DATABASES: list[str] = []


async def scratch_database_url(tmp_path: Path) -> str:
    """A new, empty database of the kind under test (a new PostgreSQL database, or a new SQLite file)."""
    if not ON_POSTGRES:
        return f"sqlite+aiosqlite:///{tmp_path / ('scratch_' + secrets.token_hex(4) + '.db')}"
    name = "licensing_scratch_" + secrets.token_hex(4)
    connection = await asyncpg.connect(POSTGRES_URL.replace("postgresql+asyncpg", "postgresql"))
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    SCRATCH_DATABASES.append(name)
    return f"{POSTGRES_URL.rpartition('/')[0]}/{name}"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    if ON_POSTGRES:
        url = POSTGRES_URL
        migrate.downgrade(url, "base")  # start every run from an empty schema
    else:
        url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'licensing.db'}"
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
async def database(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.dispose()


@pytest.fixture
def clock() -> SettableClock:
    return SettableClock(datetime(2026, 7, 1, 9, 0, tzinfo=UTC))


@pytest.fixture(scope="session", autouse=True)
def drop_scratch_databases() -> Iterator[None]:
    """PostgreSQL scratch databases outlive the test; drop them when the session ends."""
    yield
    if not SCRATCH_DATABASES:
        return

    async def drop() -> None:
        connection = await asyncpg.connect(POSTGRES_URL.replace("postgresql+asyncpg", "postgresql"))
        try:
            for name in SCRATCH_DATABASES:
                await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await connection.close()

    asyncio.run(drop())
