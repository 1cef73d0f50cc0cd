"""Billing at scale: one partner with 100k licenses with random histories (Europe/Paris, July 2026).

Prints, on a temporary SQLite file (and on PostgreSQL too when DATABASE_URL points at a scratch
database): a bare SELECT of the month's holdings (the floor), the estimate (fetch + count + price +
allocate), `billingEstimate` through GraphQL, and the month close storing every day-line.

    .venv/bin/python bench/billing.py [--licenses 100000] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import String, delete, func, or_, select, type_coerce

from app.demo import DEMO_CATALOG
from app.http import tune_garbage_collection
from app.settings import Settings
from domain.billing import BillingMonth, billable_span
from domain.clock import SettableClock
from domain.partners import Partner
from domain.principals import Principal
from domain.support import SupportContact
from persistence import migrate
from persistence.database import Database
from persistence.invoices import invoice_day_lines, invoice_lines, invoices
from persistence.licenses import licenses
from persistence.partners import partners
from persistence.unit_of_work import UnitOfWork
from resolvers.billing import finalize_partner_month, live_statement
from resolvers.context import RequestContext
from resolvers.products import import_catalog
from schema.build import build_schema

JULY = BillingMonth(2026, 7)
ZONE = "Europe/Paris"
BATCH = 5_000
ESTIMATE = """{ billingEstimate(month: "2026-07") { licenseDays costs { total { amount } }
  products { licenseDays amount { amount } } dayLines(first: 100) { totalCount nodes { days } } } }"""


def random_holding(i: int, partner_id: str, rng: random.Random) -> dict[str, object]:
    """Issued some time in June or July; then still active, revoked, or transferred out."""
    product = DEMO_CATALOG[i % len(DEMO_CATALOG)].product.slug
    held_from = datetime(2026, 6, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(61 * 24 * 60))
    fate = rng.random()
    held_until = None
    state = "assigned" if i % 2 else "issued"
    if fate < 0.3:
        held_until, state = held_from + timedelta(minutes=rng.randrange(1, 40 * 24 * 60)), "revoked"
    elif fate < 0.4:
        held_until, state = held_from + timedelta(minutes=rng.randrange(1, 40 * 24 * 60)), "transferred"
    span = billable_span(held_from, held_until, state == "transferred", ZONE)
    return {
        "first_billed_day": span.first,
        "last_billed_day": span.last,
        "id": f"lic_{i:012x}",
        "key": f"{product}_{secrets.token_hex(16)}",
        "partner_id": partner_id,
        "product_slug": product,
        "state": state,
        "site": f"https://client-{i}.example.com" if i % 2 else None,
        "held_from": held_from,
        "held_until": held_until,
        "issued_at": held_from,
        "version": 1,
    }


async def seed(database: Database, count: int) -> str:
    partner_id = "ptr_bench_" + secrets.token_hex(4)
    rng = random.Random(7)
    async with UnitOfWork(database) as uow:
        await import_catalog(uow, DEMO_CATALOG)
        await uow.connection.execute(
            partners.insert().values(
                id=partner_id,
                name="Bench Agency",
                billing_zone=ZONE,
                currency="usd",
                created_at=datetime(2026, 1, 1, tzinfo=UTC),
            )
        )
        for offset in range(0, count, BATCH):
            rows = [random_holding(i, partner_id, rng) for i in range(offset, min(offset + BATCH, count))]
            await uow.connection.execute(licenses.insert(), rows)
    return partner_id


async def seeded_partner(url: str, count: int) -> tuple[Database, Partner]:
    """A migrated database at `url` with a partner holding `count` random licenses."""
    await migrate.upgrade_async(url)
    database = Database(url)
    partner_id = await seed(database, count)
    async with UnitOfWork(database, read_only=True) as uow:
        partner = await uow.partners.get(partner_id)
    assert partner is not None
    return database, partner


async def timed(runs: int, action: Callable[[], Awaitable[object]]) -> float:
    """Median wall time in milliseconds."""
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        await action()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def measure(url: str, count: int, runs: int) -> None:
    database, partner = await seeded_partner(url, count)
    partner_id = partner.id
    start, end = JULY.bounds(ZONE)

    async def bare_select() -> None:
        async with UnitOfWork(database, read_only=True) as uow:
            await uow.billing.holdings(partner_id, start, end)

    async def raw_rows() -> None:
        async with UnitOfWork(database, read_only=True) as uow:
            c = licenses.c
            # The same rows and columns as the holdings query, as raw driver values (no conversion).
            result = await uow.connection.execute(
                select(
                    c.id,
                    c.key,
                    c.product_slug,
                    c.site,
                    type_coerce(c.held_from, String),
                    type_coerce(c.held_until, String),
                    c.state,
                ).where(
                    c.partner_id == partner_id,
                    c.held_from < end,
                    or_(c.held_until.is_(None), c.held_until >= start),
                )
            )
            result.all()

    statements: list[int] = []

    async def estimate() -> None:
        async with UnitOfWork(database, read_only=True) as uow:
            statement = await live_statement(uow, partner, JULY)
        statements.append(len(statement.day_lines))

    schema = build_schema()
    context = RequestContext(
        database=database,
        clock=SettableClock(datetime(2026, 7, 20, tzinfo=UTC)),
        principal=Principal(token_id="tok_bench", partner_id=partner_id, is_staff=False),
        request_id="bench",
        support=SupportContact("", "", ""),
    )

    async def graphql_estimate() -> None:
        result = await schema.execute(ESTIMATE, context_value=context)
        assert result.errors is None, result.errors

    async def close() -> None:
        async with UnitOfWork(database) as uow:  # undo the previous run's invoice so each run closes anew
            ids = select(invoices.c.id).where(invoices.c.partner_id == partner_id).scalar_subquery()
            await uow.connection.execute(
                delete(invoice_day_lines).where(invoice_day_lines.c.invoice_id.in_(ids))
            )
            await uow.connection.execute(delete(invoice_lines).where(invoice_lines.c.invoice_id.in_(ids)))
            await uow.connection.execute(delete(invoices).where(invoices.c.partner_id == partner_id))
        await finalize_partner_month(database, partner_id, JULY, now=datetime(2026, 8, 2, tzinfo=UTC))

    rows_ms = await timed(runs, raw_rows)
    select_ms = await timed(runs, bare_select)
    estimate_ms = await timed(runs, estimate)
    graphql_ms = await timed(runs, graphql_estimate)
    close_ms = await timed(max(1, runs // 2), close)
    async with UnitOfWork(database, read_only=True) as uow:
        stored = (
            await uow.connection.execute(select(func.count()).select_from(invoice_day_lines))
        ).scalar_one()
    await database.dispose()

    kind = url.split(":", 1)[0]
    print(f"[{kind}] {count:,} licenses, {statements[-1]:,} billed in {JULY} ({ZONE}); medians:")
    print(f"  bare SELECT of the month's rows        {rows_ms:8.1f} ms   (floor)")
    print(f"  ... as domain Holdings                 {select_ms:8.1f} ms   {select_ms / rows_ms:5.2f}x")
    print(f"  estimate (fetch+count+price+allocate)  {estimate_ms:8.1f} ms   {estimate_ms / rows_ms:5.2f}x")
    print(f"  billingEstimate via GraphQL            {graphql_ms:8.1f} ms   {graphql_ms / rows_ms:5.2f}x")
    print(f"  month close storing day-lines          {close_ms:8.1f} ms   ({stored:,} day-lines stored)")


def run_on_each_database(
    measure: Callable[[str, int, int], Awaitable[None]], description: str | None, runs: int
) -> None:
    """Parse --licenses/--runs, then measure on a temporary SQLite file, and on PostgreSQL too when
    DATABASE_URL points at a scratch database."""
    tune_garbage_collection(Settings().gc_gen0_threshold)  # as the served app does
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--licenses", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=runs)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        asyncio.run(measure(f"sqlite+aiosqlite:///{Path(folder) / 'bench.db'}", args.licenses, args.runs))
    if os.environ.get("DATABASE_URL", "").startswith("postgresql"):
        asyncio.run(measure(os.environ["DATABASE_URL"], args.licenses, args.runs))


def main() -> None:
    run_on_each_database(measure, __doc__, 5)


if __name__ == "__main__":
    main()
