"""Billing runs: closeBillingMonth answers a run at once and background jobs (procrastinate workers on
PostgreSQL, the in-process runner on SQLite) close and charge every partner, counted on the run."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, update

from app.jobs import TASKS, JobEngine, JobServices, job_engine
from domain.billing import BillingMonth
from domain.clock import SettableClock
from domain.payments import CollectionPolicy
from payments.stripe_gateway import StripeGateway
from persistence.database import Database
from persistence.invoices import invoices
from persistence.partners import partners
from persistence.payment_attempts import payment_attempts
from persistence.unit_of_work import UnitOfWork
from resolvers.billing import finalize_partner_month
from resolvers.billing_runs import DISPATCH_RUN, RESUME_STALLED, resume_stalled_runs, start_run
from tests.integration.billing_run_operations import (
    BILLING_RUN,
    RUN_FIELDS,
    close_month,
    finished_run,
    start_close,
)
from tests.integration.conftest import Api, GraphQLSocket, LiveServer, PartnerAccess, enrol
from tests.integration.license_operations import issue
from tests.integration.payment_operations import VISA, first_of, partner_with

JULY = BillingMonth.parse("2026-07")
RUNS = "{ billingRuns { id month status } }"
PROGRESS = "subscription($id: ID!) { billingRunProgress(id: $id) { " + RUN_FIELDS + " } }"


@pytest.fixture
async def worker(
    database_url: str, database: Database, gateway: StripeGateway, clock: SettableClock
) -> AsyncIterator[JobEngine]:
    """A job worker of its own (procrastinate on PostgreSQL, in-process on SQLite), on queues no app uses."""
    services = JobServices(database, gateway, clock, CollectionPolicy())
    engine = job_engine(
        database_url,
        services,
        periodic=False,
        embedded_worker=True,
        queue_prefix=f"worker-{secrets.token_hex(4)}-",
    )
    yield engine
    await engine.close()


async def invoices_for(database: Database, partner_id: str, month: str) -> int:
    async with database.engine.connect() as connection:
        found = await connection.execute(
            select(func.count()).where(invoices.c.partner_id == partner_id, invoices.c.month == month)
        )
        return int(found.scalar_one())


async def test_close_billing_month_answers_its_run_at_once_and_the_run_invoices_and_charges_everyone(
    api: Api, staff_token: str, clock: SettableClock, localstripe: Any
) -> None:
    access = await partner_with(api, staff_token, localstripe, VISA)
    await issue(api, access.token)
    clock.advance_to(first_of(8))

    answered = await start_close(api, "2026-07", staff_token)

    run = answered["run"]
    assert answered["errors"] == [] and answered["month"] == "2026-07"
    assert run["month"] == "2026-07" and run["partnersTotal"] >= 1 and run["startedAt"]
    finished = await finished_run(api, run["id"], staff_token)
    assert finished["pending"] == 0 and finished["failed"] == 0 and finished["finishedAt"]
    assert finished["closed"] + finished["alreadyClosed"] + finished["notOver"] == finished["partnersTotal"]
    assert finished["paid"] >= 1
    invoices_seen = await api.data("{ invoices(first: 5) { nodes { month status } } }", token=access.token)
    assert invoices_seen["invoices"]["nodes"] == [{"month": "2026-07", "status": "PAID"}]
    listed = (await api.data(RUNS, token=staff_token))["billingRuns"]
    assert {"id": run["id"], "month": "2026-07", "status": "FINISHED"} in listed


async def test_a_second_close_while_the_month_is_running_answers_the_running_run(
    api: Api, staff_token: str, database: Database, clock: SettableClock, worker: JobEngine
) -> None:
    await enrol(api, staff_token, "Running Agency")
    clock.advance_to(first_of(8))
    # A run that nothing works on yet: its jobs are not queued, so it is surely still running.
    running, started = await start_run(database, JULY, as_of=clock.now(), started_by=None)
    again, started_again = await start_run(database, JULY, as_of=clock.now(), started_by=None)
    assert started and not started_again and again.id == running.id

    answered = await start_close(api, "2026-07", staff_token)

    assert answered["run"]["id"] == running.id and answered["run"]["status"] == "RUNNING"
    # Ten minutes without progress: the periodic sweep queues its partners, and the run finishes.
    clock.advance_to(first_of(8) + timedelta(minutes=11))
    await resume_stalled_runs(worker.services.job(TASKS.spec(RESUME_STALLED), worker, "sweep"))
    finished = await finished_run(api, running.id, staff_token)
    assert finished["pending"] == 0 and finished["closed"] >= 1


async def test_a_partner_that_fails_is_reported_with_its_reason_retried_and_the_run_still_finishes(
    api: Api, staff_token: str, database: Database, clock: SettableClock
) -> None:
    broken = await enrol(api, staff_token, "Broken Zone Agency")
    healthy = await enrol(api, staff_token, "Healthy Agency")
    await set_zone(database, broken.id, "Mars/Olympus_Mons")  # a zone no calendar knows
    clock.advance_to(first_of(8))
    try:
        run = (await close_month(api, "2026-07", staff_token))["run"]
    finally:
        await set_zone(database, broken.id, "UTC")

    assert run["status"] == "FINISHED" and run["pending"] == 0 and run["failed"] == 1
    [failure] = run["failures"]
    assert failure["partnerId"] == broken.id and failure["state"] == "FAILED" and failure["tries"] == 3
    assert "Mars/Olympus_Mons" in failure["reason"]
    assert await invoices_for(database, broken.id, "2026-07") == 0
    assert await invoices_for(database, healthy.id, "2026-07") == 1
    # Once its zone is repaired, the next run closes it, and only it.
    rerun = (await close_month(api, "2026-07", staff_token))["run"]
    assert rerun["failed"] == 0 and rerun["closed"] == 1
    assert await invoices_for(database, broken.id, "2026-07") == 1


async def set_zone(database: Database, partner_id: str, zone: str) -> None:
    async with database.engine.begin() as connection:
        await connection.execute(
            update(partners).where(partners.c.id == partner_id).values(billing_zone=zone)
        )


async def test_a_job_that_died_after_invoicing_a_partner_is_run_again_without_invoicing_it_twice(
    api: Api,
    staff_token: str,
    database: Database,
    clock: SettableClock,
    localstripe: Any,
    worker: JobEngine,
) -> None:
    access = await partner_with(api, staff_token, localstripe, VISA)
    await issue(api, access.token)
    clock.advance_to(first_of(8))
    run, _ = await start_run(database, JULY, as_of=clock.now(), started_by=None)
    # The first delivery of the partner's job committed its invoice, then its worker was killed.
    await finalize_partner_month(database, access.id, JULY, now=clock.now())

    await worker.defer(DISPATCH_RUN, run_id=run.id)
    finished = await finished_run(api, run.id, staff_token)

    assert await invoices_for(database, access.id, "2026-07") == 1
    async with UnitOfWork(database, read_only=True) as uow:
        part = await uow.billing_runs.partner(run.id, access.id)
        invoice = await uow.invoices.for_month(access.id, JULY)
    assert part is not None and part.close is not None and part.close.value == "closed"
    assert invoice is not None and invoice.status.value == "paid"
    async with database.engine.connect() as connection:
        charges = await connection.execute(
            select(func.count()).where(
                payment_attempts.c.invoice_id == invoice.id, payment_attempts.c.status == "succeeded"
            )
        )
    assert charges.scalar_one() == 1
    assert finished["failed"] == 0


STARTED_BY = "query($id: ID!) { billingRun(id: $id) { startedBy { kind tokenId label job } } }"


async def test_a_run_names_the_staff_token_that_started_it_and_the_command_line_when_no_token_did(
    api: Api, staff_token: str, database: Database, clock: SettableClock
) -> None:
    await enrol(api, staff_token, "Started Agency")
    clock.advance_to(first_of(8))
    run_id = (await close_month(api, "2026-07", staff_token))["run"]["id"]
    from_cli, _ = await start_run(database, BillingMonth.parse("2026-06"), as_of=clock.now(), started_by=None)

    by_staff = (await api.data(STARTED_BY, {"id": run_id}, staff_token))["billingRun"]["startedBy"]
    by_operator = (await api.data(STARTED_BY, {"id": from_cli.id}, staff_token))["billingRun"]["startedBy"]

    assert by_staff["kind"] == "STAFF" and by_staff["label"] == "test staff" and by_staff["job"] is None
    assert by_staff["tokenId"] and by_staff["tokenId"].startswith("tok_")
    assert by_operator == {"kind": "SYSTEM", "tokenId": None, "label": None, "job": "operator-cli"}


async def test_billing_runs_are_for_staff_only(api: Api, partner: PartnerAccess) -> None:
    refused = await api.call(BILLING_RUN, {"id": "run_x"}, partner.token)
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    refused = await api.call(RUNS, token=partner.token)
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_an_unknown_run_is_not_found(api: Api, staff_token: str) -> None:
    missing = await api.call(BILLING_RUN, {"id": "run_missing"}, staff_token)
    assert missing["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_billing_run_progress_streams_the_run_until_it_has_finished(
    served: LiveServer, live_api: Api, staff_token: str, clock: SettableClock
) -> None:
    await enrol(live_api, staff_token, "Watched Agency")
    clock.advance_to(datetime(2026, 8, 1, 0, 30, tzinfo=UTC))
    run_id = (await start_close(live_api, "2026-07", staff_token))["run"]["id"]
    seen: list[dict[str, Any]] = []
    async with GraphQLSocket.open(served.address, {"authorization": f"Bearer {staff_token}"}) as socket:
        assert (await socket.receive())["type"] == "connection_ack"
        await socket.subscribe("1", PROGRESS, {"id": run_id})
        while True:
            message = await socket.receive()
            if message["type"] == "complete":
                break
            assert message["type"] == "next" and "errors" not in message["payload"], message
            seen.append(message["payload"]["data"]["billingRunProgress"])

    assert seen and {run["id"] for run in seen} == {run_id}
    last = seen[-1]
    assert last["status"] == "FINISHED" and last["pending"] == 0 and last["closed"] >= 1
    assert [run["pending"] for run in seen] == sorted((run["pending"] for run in seen), reverse=True)
