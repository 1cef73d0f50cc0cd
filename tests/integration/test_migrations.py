"""The schema comes only from Alembic, on both databases, and migrations run both ways."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

import persistence.tables  # noqa: F401
from persistence import migrate
from persistence.database import Database
from persistence.metadata import metadata
from tests.conftest import scratch_database_url


async def table_names(url: str) -> set[str]:
    database = Database(url)
    try:
        async with database.engine.connect() as connection:
            return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await database.dispose()


async def test_upgrade_downgrade_upgrade_round_trip(tmp_path: Path) -> None:
    url = await scratch_database_url(tmp_path)
    await migrate.upgrade_async(url)
    assert {"partners", "api_tokens", "products", "events"} <= await table_names(url)
    await migrate.downgrade_async(url, "base")
    assert await table_names(url) <= {"alembic_version"}
    await migrate.upgrade_async(url)
    assert "partners" in await table_names(url)


async def test_migrated_database_matches_the_table_definitions(database: Database) -> None:
    def differences(sync_connection: object) -> list[object]:
        context = MigrationContext.configure(sync_connection, opts={"compare_type": False})  # type: ignore[arg-type]
        return list(compare_metadata(context, metadata))

    async with database.engine.connect() as connection:
        diff = await connection.run_sync(differences)
    assert diff == []
