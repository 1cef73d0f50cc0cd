"""Billing runs: `closeBillingMonth` starts a run and answers at once; background jobs close and charge
each partner's month (one job per partner), count it on the run, and finish the run when no partner is
left. Every step is idempotent, so a job killed at any point is simply run again:

- the invoice is unique per partner and month (a second close finds it, and counts it as closed);
- a charge is an attempt with a stable Stripe idempotency key, stored before Stripe hears of it, and a
  pending attempt blocks any other charge of its invoice (resolvers/charging.py);
- the run's row per partner is only written once the partner is done, and only while it is still open.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncGenerator
from datetime import datetime, timedelta

from domain.access import Permission
from domain.billing import BillingMonth
from domain.billing_runs import (
    BillingRun,
    ChargeResult,
    CloseResult,
    RunPartner,
    RunStatus,
    after_failure,
)
from domain.errors import DomainError, ErrorCode
from domain.invoices import InvoiceStatus
from domain.payments import ChargeTrigger
from persistence.database import Database
from persistence.unit_of_work import UnitOfWork
from resolvers.billing import EARLIEST_ZONE, CloseOutcome, close_partner_month
from resolvers.charging import CollectionOutcome, Collector, collect_invoice
from resolvers.context import RequestContext
from resolvers.idempotency import idempotent_call, replay_race, staff_scope, store_outcome, stored_outcome
from resolvers.jobs import Job

log = logging.getLogger("licensing.billing_runs")

# Task names, as registered in app/jobs.py.
DISPATCH_RUN = "billing.dispatch_run"
CLOSE_PARTNER = "billing.close_partner"
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
    """Queue one close job per partner still open in the run (again, after a crash: each is idempotent)."""
    async with UnitOfWork(job.database, read_only=True) as uow:
        open_partners = await uow.billing_runs.open_partner_ids(run_id)
    if open_partners:
        await job.queue.defer_many(
            CLOSE_PARTNER, [{"run_id": run_id, "partner_id": partner_id} for partner_id in open_partners]
        )
    else:
        await _finish_if_done(job, run_id)


async def close_run_partner(job: Job, *, run_id: str, partner_id: str) -> None:
    """Close and charge one partner's month for the run. A failure is stored with its reason and
    raised (so the engine retries) until the partner has had its tries; then it is given up."""
    async with UnitOfWork(job.database, read_only=True) as uow:
        run = await uow.billing_runs.get_header(run_id)
        part = await uow.billing_runs.partner(run_id, partner_id)
    if run is None or part is None or not part.state.is_open:
        return  # done by an earlier delivery of this job
    now = job.now_at_least(run.as_of)
    month = BillingMonth.parse(run.month)
    try:
        close = await _close(job, part, month, now)
        charge = await _charge(job, part, month, now, closed_now=close is CloseResult.CLOSED)
    except Exception as error:
        state = after_failure(part.tries)
        log.warning("billing run %s: partner %s failed (%s): %s", run_id, partner_id, state, error)
        await _record(
            job, run_id, partner_id, state=state.value, tries=part.tries + 1, reason=_reason(error), at=now
        )
        if not state.is_open:
            await _finish_if_done(job, run_id, now)
            return
        raise
    await _record(
        job,
        run_id,
        partner_id,
        state="done",
        close_result=None if close is None else close.value,
        charge_result=None if charge is None else charge.value,
        tries=part.tries + 1,
        reason=None,
        at=now,
    )
    await _finish_if_done(job, run_id, now)


async def _close(job: Job, part: RunPartner, month: BillingMonth, now: datetime) -> CloseResult:
    if part.close is CloseResult.ALREADY_CLOSED:
        return CloseResult.ALREADY_CLOSED  # invoiced before the run started; only its charge is left
    outcome = await close_partner_month(
        job.database, part.partner_id, month, now=now, request_id=job.request_id, actor=job.recorded_as
    )
    if outcome is CloseOutcome.PENDING:
        return CloseResult.NOT_OVER
    # ALREADY_CLOSED here means an earlier delivery of this job committed the invoice, then died.
    return CloseResult.CLOSED


async def _charge(
    job: Job, part: RunPartner, month: BillingMonth, now: datetime, *, closed_now: bool
) -> ChargeResult | None:
    """Charge the month's invoice if it is still open; an invoice this run closed that a dead delivery
    already charged is counted by its status."""
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


async def _record(job: Job, run_id: str, partner_id: str, *, at: datetime, **values: object) -> None:
    async with UnitOfWork(job.database) as uow:
        await uow.billing_runs.record(run_id, partner_id, updated_at=at, **values)


async def _finish_if_done(job: Job, run_id: str, at: datetime | None = None) -> None:
    async with UnitOfWork(job.database) as uow:
        if await uow.billing_runs.finish_if_done(run_id, at or job.clock.now()):
            log.info("billing run %s finished", run_id)
        run = await uow.billing_runs.get(run_id)
    if run is not None:
        counts = run.counts
        job.observer.month_close_progress(counts.partners_total - counts.pending, counts.partners_total)


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
