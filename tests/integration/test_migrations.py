"""The schema comes only from Alembic, on both databases, and migrations run both ways."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

import persistence.tables  # noqa: F401
from domain.billing import BillingMonth
from persistence import migrate
from persistence.database import Database
from persistence.licenses import licenses
from persistence.metadata import managed_here, metadata
from persistence.partners import partners
from persistence.unit_of_work import UnitOfWork
from resolvers.billing import estimated_sums
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
        context = MigrationContext.configure(
            sync_connection, opts={"compare_type": False, "include_name": managed_here}
        )  # type: ignore[arg-type]
        return list(compare_metadata(context, metadata))

    async with database.engine.connect() as connection:
        diff = await connection.run_sync(differences)
    assert diff == []


JUNE_15 = datetime(2026, 6, 15, 10, 0, tzinfo=UTC)


async def test_prices_of_a_database_from_before_dated_prices_move_over_and_bill_identically(
    tmp_path: Path,
) -> None:
    """A product priced in the old single-price column bills the same after 0006_catalog_prices."""
    url = await scratch_database_url(tmp_path)
    await migrate.upgrade_async(url, "0005_payments_hardening")  # the revision before 0006
    database = Database(url)
    async with database.engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO products (slug, name, description, daily_price_micros, currency) "
                "VALUES ('backup', 'Backup', '', 328767, 'usd')"
            )
        )
        # These two tables are unchanged by 0006, so their current definitions write them.
        await connection.execute(
            partners.insert(),
            [
                {
                    "id": partner_id,
                    "name": partner_id,
                    "billing_zone": "UTC",
                    "currency": currency,
                    "created_at": JUNE_15,
                }
                for partner_id, currency in (("ptr_old", "usd"), ("ptr_euro", "eur"))
            ],
        )
        await connection.execute(
            licenses.insert(),
            [
                {
                    "id": f"lic_{partner_id}",
                    "key": f"backup_{partner_id}",
                    "partner_id": partner_id,
                    "product_slug": "backup",
                    "state": "issued",
                    "held_from": JUNE_15,
                    "issued_at": JUNE_15,
                    "version": 1,
                }
                for partner_id in ("ptr_old", "ptr_euro")
            ],
        )
    await database.dispose()

    await migrate.upgrade_async(url)
    database = Database(url)
    try:
        async with UnitOfWork(database, read_only=True) as uow:
            (product,) = await uow.products.list_all()
            statements = []
            for partner_id in ("ptr_old", "ptr_euro"):
                partner = await uow.partners.get(partner_id)
                assert partner is not None
                # The estimate sums the billed-day spans that migration 0010 backfilled.
                statements.append((await estimated_sums(uow, partner, BillingMonth(2026, 7))).statement())
    finally:
        await database.dispose()
    # The euro partner was billed the USD figure in EUR before; it keeps that until staff price EUR.
    assert [(p.currency, p.effective_from, p.daily_price_micros) for p in product.prices] == [
        ("eur", date(2000, 1, 1), 328767),
        ("usd", date(2000, 1, 1), 328767),
    ]
    for statement in statements:
        (line,) = statement.product_lines
        assert (line.license_days, line.daily_price_micros, line.amount) == (31, 328767, 1019)  # 10.191777


async def test_tokens_from_before_roles_become_admin_and_staff_admin(tmp_path: Path) -> None:
    url = await scratch_database_url(tmp_path)
    await migrate.upgrade_async(url, "0007_invoice_adjustments")  # the revision before 0008_access
    database = Database(url)
    async with database.engine.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO partners (id, name, billing_zone, currency, created_at) "
                "VALUES ('ptr_old', 'Old', 'UTC', 'usd', '2025-06-15 00:00:00')"
            )
        )
        await connection.execute(
            text(
                "INSERT INTO api_tokens (id, token_hash, partner_id, is_staff, label, created_at) VALUES "
                "('tok_partner', 'h1', 'ptr_old', false, 'p', '2025-06-15 00:00:00'), "
                "('tok_staff', 'h2', NULL, true, 's', '2025-06-15 00:00:00')"
            )
        )
    await database.dispose()
    await migrate.upgrade_async(url)
    database = Database(url)
    try:
        async with UnitOfWork(database, read_only=True) as uow:
            roles = {token.id: token.role.value for token in await uow.tokens.listed(None)}
    finally:
        await database.dispose()
    assert roles == {"tok_partner": "admin", "tok_staff": "staff_admin"}
