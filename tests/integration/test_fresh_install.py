"""A fresh install sells without `licensing demo`: migrate, import the catalog, enrol, add a card, issue."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import select

from app.devstripe import LocalStripe
from app.http import create_app
from domain.billing import BillingMonth
from domain.clock import SettableClock
from persistence.database import Database
from persistence.invoices import invoices
from resolvers.billing import CloseOutcome, finalize_partner_month
from tests.conftest import scratch_database_url
from tests.integration.conftest import Api, add_card, stripe_settings
from tests.integration.license_operations import issue

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / "app" / "catalog.toml"


def licensing(url: str, *args: str) -> str:
    """Run the `licensing` command as an operator would; its stdout (asserting it succeeded)."""
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=dict(os.environ, DATABASE_URL=url, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_fresh_install_sells_after_migrate_catalog_import_and_a_card(
    tmp_path: Path, localstripe: LocalStripe, clock: SettableClock
) -> None:
    url = await scratch_database_url(tmp_path)
    licensing(url, "migrate")
    assert "9 products created, 0 updated, 54 prices set" in licensing(url, "catalog", "import", str(CATALOG))
    assert "0 products created, 0 updated, 0 prices set" in licensing(url, "catalog", "import", str(CATALOG))
    listed = licensing(url, "product", "list")
    assert "jetpack-backup  VaultPress Backup" in listed
    assert "jpy       49.315050/day  from 2000-01-01" in listed
    partner_id = licensing(url, "partner", "create", "First Customer", "--currency", "eur").strip()
    token = licensing(url, "token", "create", "--partner", partner_id).strip()

    app = create_app(stripe_settings(url, localstripe), clock=clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        api = Api(client)
        await add_card(api, token, "pm_card_visa")
        keys = await issue(api, token, "jetpack-scan", 2)
    await app.state.services.database.dispose()
    assert len(keys) == 2


async def test_cli_prices_and_retires_and_refuses_bad_input(tmp_path: Path) -> None:
    url = await scratch_database_url(tmp_path)
    licensing(url, "migrate")
    assert licensing(url, "product", "create", "uptime", "Uptime monitor").strip() == "uptime"
    assert "uptime usd 0.100000/day from 2030-02-01" in licensing(
        url, "product", "price", "uptime", "usd", "100000", "--from", "2030-02-01"
    )
    env = dict(os.environ, DATABASE_URL=url, PYTHONPATH=str(ROOT))
    refused = subprocess.run(
        [sys.executable, "-m", "app.cli", "product", "price", "uptime", "usd", "0", "--from", "2030-02-01"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (refused.returncode, refused.stderr.split(":")[:2]) == (1, ["error", " INVALID_INPUT"])
    assert "uptime retired at" in licensing(url, "product", "retire", "uptime")
    assert "(retired" in licensing(url, "product", "list")


async def test_concurrent_month_closes_number_invoices_without_gaps_or_duplicates(tmp_path: Path) -> None:
    """Closers racing over the same partners: each partner gets one invoice, numbers run 1..n."""
    url = await scratch_database_url(tmp_path)
    licensing(url, "migrate")
    partners = [licensing(url, "partner", "create", f"Agency {n}").strip() for n in range(8)]
    database = Database(url)
    # Each closer commits alone; on PostgreSQL the 16 run on separate connections at once.
    december, now = BillingMonth(2098, 12), datetime(2099, 1, 2, tzinfo=UTC)
    try:
        closes = await asyncio.gather(
            *(finalize_partner_month(database, partner_id, december, now=now) for partner_id in partners * 2)
        )
        async with database.engine.connect() as connection:
            numbers = list((await connection.execute(select(invoices.c.number))).scalars())
    finally:
        await database.dispose()
    outcomes = sorted(close.outcome for close in closes)
    assert outcomes == sorted([CloseOutcome.CLOSED] * 8 + [CloseOutcome.ALREADY_CLOSED] * 8)
    assert sorted(numbers) == [f"2099-{n:06d}" for n in range(1, 9)]
