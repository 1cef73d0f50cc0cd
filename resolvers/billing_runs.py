"""Billing runs: `closeBillingMonth` starts a run and answers at once; background jobs close and charge
each partner's month (a batch of partners per job), count them on the run, and finish the run when no
partner is left. Every step is idempotent, so a job killed at any point is simply run again:

- the invoice is unique per partner and month (a second close finds it, and counts it as closed);
- a charge is an attempt with a stable Stripe idempotency key, stored before Stripe hears of it, and a
  pending attempt blocks any other charge of its invoice (resolvers/charging.py);
- the run's row per partner is only written once its batch is done, and only while it is still open.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncGenerator
from dataclasses import replace
from datetime import datetime, timedelta

from domain.access import Permission
from domain.billing import BillingMonth
from domain.billing_runs import (
    BillingRun,
    ChargeResult,
    CloseResult,
    PartnerState,
    RunPartner,
    RunStatus,
    after_failure,
)
from domain.errors import DomainError, ErrorCode
from domain.invoices import Invoice, InvoiceStatus
from domain.payments import ChargeTrigger
from persistence.database import Database
from persistence.unit_of_work import UnitOfWork
from resolvers.billing import EARLIEST_ZONE, CloseOutcome, finalize_partner_month
from resolvers.charging import CollectionOutcome, Collector, collect_invoice
from resolvers.context import RequestContext
from resolvers.idempotency import idempotent_call, replay_race, staff_scope, store_outcome, stored_outcome
from resolvers.jobs import Job, JsonValue

log = logging.getLogger("licensing.billing_runs")

# Task names, as registered in app/jobs.py.
DISPATCH_RUN = "billing.dispatch_run"
CLOSE_PARTNERS = "billing.close_partners"
CLOSE_PARTNER = "billing.close_partner"  # one partner per job, as queued before batches

# Partners closed by one job: a batch is one job to fetch and finish, one read of the partners' run
# rows and one write of their results, instead of one each per partner; small enough that progress
# moves often and a batch run again after a crash redoes little (its done partners are skipped).
PARTNERS_PER_JOB = 25

RESUME_STALLED = "billing.resume_stalled_runs"

# A run with partners left and no progress for this long lost its jobs (a crash between starting the
# run and queueing them, say): `resume_stalled_runs` queues them again.
STALLED_AFTER = timedelta(minutes=10)
# How often a billingRunProgress subscription looks at the run.
PROGRESS_POLL_SECONDS = 0.5
RUNS_LISTED = 50
FAILURES_LISTED = 100


async def close_billing_month(
    ctx: RequestContext, *, month: str, idempotency_key: str | None = None
) -> BillingRun:
    """Staff: start closing `month` for every partner, or answer the run already closing it."""
    staff = ctx.require_staff(Permission.MONTH_CLOSE)
    call = idempotent_call(staff_scope(staff), idempotency_key, "closeBillingMonth", {"month": month})
    billing_month = BillingMonth.parse(month)
    async with ctx.reader() as uow:
        outcome = await stored_outcome(uow, call)
        replayed = None if outcome is None else await uow.billing_runs.get(str(outcome.get("run_id")))
    if replayed is not None:
        return replayed
    now = ctx.clock.now()
    billing_month.require_over(now, EARLIEST_ZONE)
    run, started = await start_run(ctx.database, billing_month, as_of=now, started_by=staff.token_id)
    if started:
        await ctx.job_queue().defer(DISPATCH_RUN, run_id=run.id)
    async with replay_race(), ctx.unit_of_work() as uow:
        await store_outcome(uow, call, {"run_id": run.id}, now)
    return run


async def start_run(
    database: Database, month: BillingMonth, *, as_of: datetime, started_by: str | None
) -> tuple[BillingRun, bool]:
    """A new run of `month` with every partner enrolled before the month ended anywhere, or the one
    already running (the unique index on running months settles a race between two starts)."""
    run_id = "run_" + secrets.token_hex(8)
    for _ in range(2):
        async with UnitOfWork(database) as uow:
            running = await uow.billing_runs.running(str(month))
            if running is not None:
                return running, False
            try:
                await uow.billing_runs.start(
                    run_id,
                    str(month),
                    as_of=as_of,
                    enrolled_before=month.next().bounds("Etc/GMT+12")[0],
                    started_by=started_by,
                )
            except Exception as error:  # the other start committed first: read its run
                if not _is_unique_violation(error):
                    raise
                continue
        async with UnitOfWork(database, read_only=True) as uow:
            run = await uow.billing_runs.get(run_id)
        assert run is not None
        return run, True
    raise DomainError(ErrorCode.CONFLICT, f"A run of {month} is starting; try again.")


def _is_unique_violation(error: Exception) -> bool:
    text = str(error).lower()
    return "unique" in text or "duplicate" in text


async def billing_run(ctx: RequestContext, run_id: str) -> BillingRun:
    ctx.require_staff(Permission.BILLING_RUNS_READ)
    async with ctx.reader() as uow:
        run = await uow.billing_runs.get(run_id)
    if run is None:
        raise DomainError(ErrorCode.NOT_FOUND, f"No billing run '{run_id}'.", field="id")
    return run


async def billing_runs(ctx: RequestContext) -> list[BillingRun]:
    """The latest runs, newest first."""
    ctx.require_staff(Permission.BILLING_RUNS_READ)
    async with ctx.reader() as uow:
        return await uow.billing_runs.listed(limit=RUNS_LISTED)


async def run_failures(database: Database, run_id: str) -> list[RunPartner]:
    """Partners whose close failed (still retrying, or given up), with their reason."""
    async with UnitOfWork(database, read_only=True) as uow:
        return await uow.billing_runs.failures(run_id, limit=FAILURES_LISTED)


async def billing_run_progress(
    ctx: RequestContext, run_id: str, *, poll_seconds: float = PROGRESS_POLL_SECONDS
) -> AsyncGenerator[BillingRun, None]:
    """The run now, then each time its counts change, until it has finished."""
    last = await billing_run(ctx, run_id)
    yield last
    while last.status is not RunStatus.FINISHED:
        await asyncio.sleep(poll_seconds)
        async with ctx.reader() as uow:
            current = await uow.billing_runs.get(run_id)
        if current is not None and (current.counts, current.status) != (last.counts, last.status):
            last = current
            yield current


async def watch_run(
    database: Database, run_id: str, *, poll_seconds: float = PROGRESS_POLL_SECONDS
) -> AsyncGenerator[BillingRun, None]:
    """The run as it goes (the command line's progress bar), until it has finished."""
    while True:
        async with UnitOfWork(database, read_only=True) as uow:
            run = await uow.billing_runs.get(run_id)
        if run is None:
            raise DomainError(ErrorCode.NOT_FOUND, f"No billing run '{run_id}'.")
        yield run
        if run.status is RunStatus.FINISHED:
            return
        await asyncio.sleep(poll_seconds)


# --- tasks (registered in app/jobs.py) ---


async def dispatch_run(job: Job, *, run_id: str) -> None:
    """Queue one close job per batch of partners still open in the run (again, after a crash: each is
    idempotent)."""
    async with UnitOfWork(job.database, read_only=True) as uow:
        open_partners = await uow.billing_runs.open_partner_ids(run_id)
    if open_partners:
        batches: list[list[JsonValue]] = [
            list(open_partners[start : start + PARTNERS_PER_JOB])
            for start in range(0, len(open_partners), PARTNERS_PER_JOB)
        ]
        await job.queue.defer_many(
            CLOSE_PARTNERS, [{"run_id": run_id, "partner_ids": ids} for ids in batches]
        )
    else:
        await _finish_if_done(job, run_id, job.clock.now())


async def close_run_partners(job: Job, *, run_id: str, partner_ids: list[str]) -> None:
    """Close and charge each of these partners' month for the run (each in its own transactions), then
    store how far every one got in one write. A failure is stored with its reason; the job then raises
    (so the engine retries it, skipping the partners done) until the partner has had its tries, when it
    is given up. A job killed before its write is run again: its invoices and charges are found, not
    made twice, and counted by their status."""
    async with UnitOfWork(job.database, read_only=True) as uow:
        run = await uow.billing_runs.get_header(run_id)
        parts = await uow.billing_runs.partners(run_id, partner_ids)
    if run is None:
        return
    now = job.now_at_least(run.as_of)
    month = BillingMonth.parse(run.month)
    outcomes = [await _close_and_charge(job, part, month, now) for part in parts if part.state.is_open]
    await _record(job, run_id, outcomes)
    await _finish_if_done(job, run_id, now)
    retrying = [part.partner_id for part in outcomes if part.state.is_open]
    if retrying:
        raise PartnersRetrying(f"billing run {run_id}: {len(retrying)} partner(s) to retry: {retrying[:5]}")


async def close_run_partner(job: Job, *, run_id: str, partner_id: str) -> None:
    """A job queued one partner at a time (before batches): closed as a batch of one."""
    await close_run_partners(job, run_id=run_id, partner_ids=[partner_id])


class PartnersRetrying(Exception):
    """Some partners of a batch failed and have tries left: the job engine runs the batch again."""


async def _close_and_charge(job: Job, part: RunPartner, month: BillingMonth, now: datetime) -> RunPartner:
    """One partner's close and charge, as the run records it."""
    tries = part.tries + 1
    try:
        close, invoice = await _close(job, part, month, now)
        charge = await _charge(job, part, month, now, closed_now=close is CloseResult.CLOSED, invoice=invoice)
    except Exception as error:
        state = after_failure(part.tries)
        log.warning("partner %s failed (%s): %s", part.partner_id, state, error)
        return replace(part, state=state, tries=tries, reason=_reason(error), updated_at=now)
    return RunPartner(part.partner_id, PartnerState.DONE, close, charge, tries, None, now)


async def _close(
    job: Job, part: RunPartner, month: BillingMonth, now: datetime
) -> tuple[CloseResult, Invoice | None]:
    """How the partner's close went, and the invoice it finalized now (None: read it to charge it)."""
    if part.close is CloseResult.ALREADY_CLOSED:
        return CloseResult.ALREADY_CLOSED, None  # invoiced before the run started; only its charge is left
    closed = await finalize_partner_month(
        job.database, part.partner_id, month, now=now, request_id=job.request_id, actor=job.recorded_as
    )
    if closed.outcome is CloseOutcome.PENDING:
        return CloseResult.NOT_OVER, None
    # ALREADY_CLOSED here means an earlier delivery of this job committed the invoice, then died.
    return CloseResult.CLOSED, closed.invoice


async def _charge(
    job: Job,
    part: RunPartner,
    month: BillingMonth,
    now: datetime,
    *,
    closed_now: bool,
    invoice: Invoice | None,
) -> ChargeResult | None:
    """Charge the month's invoice if it is still open; an invoice this run closed that a dead delivery
    already charged is counted by its status."""
    if invoice is None:
        async with UnitOfWork(job.database, read_only=True) as uow:
            invoice = await uow.invoices.for_month(part.partner_id, month)
    if invoice is None:
        return None
    if invoice.status is InvoiceStatus.OPEN:
        collector = Collector(
            job.database, job.gateway, job.policy, now, job.request_id, job.recorded_as, job.observer
        )
        try:
            collection = await collect_invoice(
                collector,
                partner_id=part.partner_id,
                invoice_id=invoice.id,
                trigger=ChargeTrigger.MONTH_CLOSE,
            )
        except DomainError as error:  # a charge of it is in flight (CONFLICT): dunning settles it
            log.info("invoice %s not collected now: %s", invoice.id, error.message)
            return ChargeResult.UNCOLLECTED
        return {
            CollectionOutcome.PAID: ChargeResult.PAID,
            CollectionOutcome.FAILED: ChargeResult.PAST_DUE,
        }.get(collection.outcome, ChargeResult.UNCOLLECTED)
    if closed_now and invoice.status is InvoiceStatus.PAID and invoice.total > 0:
        return ChargeResult.PAID
    if closed_now and invoice.status is InvoiceStatus.PAST_DUE:
        return ChargeResult.PAST_DUE
    return None


async def _record(job: Job, run_id: str, outcomes: list[RunPartner]) -> None:
    async with UnitOfWork(job.database) as uow:
        await uow.billing_runs.record(run_id, outcomes)


async def _finish_if_done(job: Job, run_id: str, at: datetime) -> None:
    """Finish the run if nothing is left (in its own transaction, after the batch's commit), and tell
    the observer how far it is."""
    async with UnitOfWork(job.database) as uow:
        progress = await uow.billing_runs.finish_if_done(run_id, at)
    if progress.finished_now:
        log.info("billing run %s finished", run_id)
    job.observer.month_close_progress(progress.done, progress.total)


def _reason(error: Exception) -> str:
    if isinstance(error, DomainError):
        return f"{error.code.value}: {error.message}"[:500]
    return f"{type(error).__name__}: {error}"[:500]


async def resume_stalled_runs(job: Job) -> None:
    """Queue again the partners of runs that made no progress for STALLED_AFTER (their jobs were lost)."""
    async with UnitOfWork(job.database, read_only=True) as uow:
        stalled = await uow.billing_runs.stalled_ids(job.clock.now() - STALLED_AFTER)
    for run_id in stalled:
        log.warning(
            "billing run %s made no progress for %s: queueing its partners again", run_id, STALLED_AFTER
        )
        await dispatch_run(job, run_id=run_id)


async def resume_unfinished_runs(job: Job) -> None:
    """Queue again every unfinished run (an in-process runner starting: whatever it had queued is gone)."""
    async with UnitOfWork(job.database, read_only=True) as uow:
        unfinished = await uow.billing_runs.unfinished_ids()
    for run_id in unfinished:
        await dispatch_run(job, run_id=run_id)
