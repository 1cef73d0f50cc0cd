"""`licensing billing close`: the operator's month close, with a progress bar, safe to re-run."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from app.demo import DEMO_CATALOG
from domain.partners import Partner
from persistence import migrate
from persistence.database import Database
from persistence.unit_of_work import UnitOfWork
from resolvers.partners import new_partner_id
from resolvers.products import import_catalog
from tests.conftest import scratch_database_url
from tests.integration.conftest import STRIPE_API_KEY, STRIPE_WEBHOOK_SECRET

ROOT = Path(__file__).resolve().parents[2]
# Outside sandbox mode the CLI refuses Stripe's public defaults (nothing is charged here: no cards).
OWN_STRIPE_SECRETS = {"STRIPE_API_KEY": STRIPE_API_KEY, "STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET}


async def test_cli_closes_every_partners_month_once(tmp_path: Path) -> None:
    url = await scratch_database_url(tmp_path)
    await migrate.upgrade_async(url)
    database = Database(url)
    async with UnitOfWork(database) as uow:
        await import_catalog(uow, DEMO_CATALOG)
        for name in ("North", "South", "East"):
            await uow.partners.add(
                Partner(new_partner_id(), name, "UTC", "usd", datetime(2026, 1, 5, tzinfo=UTC))
            )
    await database.dispose()

    def close() -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, DATABASE_URL=url, PYTHONPATH=str(ROOT), **OWN_STRIPE_SECRETS)
        return subprocess.run(
            [sys.executable, "-m", "app.cli", "billing", "close", "--month", "2026-02"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    first, second = close(), close()
    assert first.returncode == 0, first.stderr
    assert "3/3 partners" in first.stderr
    assert "2026-02: 3 closed, 0 already closed, 0 pending" in first.stdout
    assert "2026-02: 0 closed, 3 already closed, 0 pending" in second.stdout


async def test_cli_refuses_a_month_that_has_not_ended(tmp_path: Path) -> None:
    url = await scratch_database_url(tmp_path)
    await migrate.upgrade_async(url)
    env = dict(os.environ, DATABASE_URL=url, PYTHONPATH=str(ROOT), **OWN_STRIPE_SECRETS)
    refused = subprocess.run(
        [sys.executable, "-m", "app.cli", "billing", "close", "--month", "2099-01"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 1
    assert "MONTH_NOT_OVER" in refused.stderr
