"""A billing run survives its database connections being cut: every connection to the database is
terminated (pg_terminate_backend, what a PostgreSQL restart does to its clients) twice while a
procrastinate worker is closing partners, and the run still finishes with every partner invoiced and
charged exactly once. The shared PostgreSQL server itself is never restarted."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest
from sqlalchemy import func, select

from app.jobs import JobEngine
from domain.billing import BillingMonth
from domain.clock import SettableClock
from persistence.database import Database
from persistence.invoices import invoices
from persistence.payment_attempts import payment_attempts
from persistence.unit_of_work import UnitOfWork
from resolvers.billing_runs import DISPATCH_RUN, start_run
from tests.conftest import ON_POSTGRES, POSTGRES_URL
from tests.integration.billing_run_operations import finished_run
from tests.integration.conftest import Api
from tests.integration.license_operations import issue
from tests.integration.payment_operations import DECLINES_CHARGES, VISA, first_of, partner_with
from tests.integration.test_billing_runs import worker  # noqa: F401  (the fixture)

pytestmark = pytest.mark.skipif(not ON_POSTGRES, reason="terminates PostgreSQL backends")

# A month no other test closes: a run of it left running elsewhere would be answered instead.
SEPTEMBER = BillingMonth.parse("2026-09")


async def cut_every_connection() -> int:
    """Terminate every other backend of the test database: the worker's, the pool's, LISTEN's."""
    connection = await asyncpg.connect(POSTGRES_URL.replace("postgresql+asyncpg", "postgresql"))
    try:
        cut = await connection.fetchval(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return int(cut)
    finally:
        await connection.close()


async def september_invoices(database: Database) -> int:
    async with UnitOfWork(database, read_only=True) as uow:
        found = await uow.connection.execute(
            select(func.count()).select_from(invoices).where(invoices.c.month == str(SEPTEMBER))
        )
        return int(found.scalar_one())


async def test_a_run_whose_database_connections_are_cut_twice_midway_invoices_and_charges_everyone_once(
    api: Api,
    staff_token: str,
    database: Database,
    clock: SettableClock,
    localstripe: Any,
    worker: JobEngine,  # noqa: F811
) -> None:
    with_cards = [await partner_with(api, staff_token, localstripe, VISA) for _ in range(4)]
    declined = [await partner_with(api, staff_token, localstripe, DECLINES_CHARGES) for _ in range(8)]
    for access in [*with_cards, *declined]:
        await issue(api, access.token)
    clock.advance_to(first_of(10))
    run, started = await start_run(database, SEPTEMBER, as_of=clock.now(), started_by=None)
    assert started
    before = await september_invoices(database)

    await worker.defer(DISPATCH_RUN, run_id=run.id)
    cuts_mid_run = 0
    deadline = time.monotonic() + 120
    for done_at_least in (1, 6):  # once after the first partner, once about halfway
        while await september_invoices(database) - before < done_at_least and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        async with UnitOfWork(database, read_only=True) as uow:
            running = await uow.billing_runs.get(run.id)
        assert await cut_every_connection() >= 1
        cuts_mid_run += running is not None and running.counts.pending > 0
    finished = await finished_run(api, run.id, staff_token, timeout=240)

    assert cuts_mid_run >= 1, "the run finished before the connections were cut"
    assert finished["pending"] == 0
    ours = [*with_cards, *declined]
    statuses = await september_statuses(database, [access.id for access in ours])
    async with UnitOfWork(database, read_only=True) as uow:
        parts = await uow.billing_runs.partners(run.id, [access.id for access in ours])
    assert {part.state.value for part in parts} == {"done"}, parts
    counted = {part.partner_id: part.charge.value if part.charge else None for part in parts}
    # One invoice each. A charge cut between Stripe's answer and its commit stays in flight: the run
    # leaves that invoice OPEN for dunning (counted uncollected) rather than charge it again.
    counted_as = {"paid": "paid", "past_due": "past_due", "open": "uncollected"}
    for access in ours:
        [status] = statuses[access.id]
        assert counted[access.id] == counted_as[status]
        assert status in (("paid", "open") if access in with_cards else ("past_due", "open"))
    assert [statuses[access.id] for access in ours].count(["open"]) <= 2  # at most one per cut
    async with database.engine.connect() as connection:
        charged_twice = await connection.execute(
            select(payment_attempts.c.invoice_id)
            .where(payment_attempts.c.status == "succeeded")
            .group_by(payment_attempts.c.invoice_id)
            .having(func.count() > 1)
        )
    assert charged_twice.all() == []


async def september_statuses(database: Database, partner_ids: list[str]) -> dict[str, list[str]]:
    """Each partner's July invoices' statuses (one each, when none was invoiced twice)."""
    async with database.engine.connect() as connection:
        rows = await connection.execute(
            select(invoices.c.partner_id, invoices.c.status).where(
                invoices.c.month == str(SEPTEMBER), invoices.c.partner_id.in_(partner_ids)
            )
        )
    found: dict[str, list[str]] = {partner_id: [] for partner_id in partner_ids}
    for partner_id, status in rows:
        found[partner_id].append(status)
    return found
