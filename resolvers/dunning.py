"""Dunning: charge what an outage left open, retry past-due invoices on their days, and revoke the
licenses of partners past due for too long, in bounded batches that a later run resumes after a crash."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from domain.actors import DUNNING, Actor
from domain.errors import DomainError
from domain.invoices import InvoiceStatus, invoice_fact
from domain.payments import ChargeTrigger, CollectionPolicy, DunningStep, dunning_decision
from payments.gateway import PaymentGateway
from persistence.database import Database
from persistence.dunning import Dunning
from persistence.unit_of_work import UnitOfWork
from resolvers.charging import Collection, CollectionOutcome, Collector, collect_invoice
from resolvers.jobs import Job, JobQueue
from resolvers.licenses import revoke_for_nonpayment

log = logging.getLogger("licensing.dunning")

DUNNING_ACTOR = Actor.system(DUNNING)
# Task names, as registered in app/jobs.py.
DAILY_DUNNING = "dunning.daily"
REVOKE_FOR_NONPAYMENT = "dunning.revoke_for_nonpayment"


@dataclass(frozen=True)
class CollectionReport:
    paid: int = 0
    past_due: int = 0
    uncollected: int = 0  # Stripe unreachable, or a charge already in flight: a later run retries

    def add(self, collection: Collection | None) -> CollectionReport:
        if collection is None or collection.outcome in (
            CollectionOutcome.UNAVAILABLE,
            CollectionOutcome.IN_PROGRESS,
        ):
            return CollectionReport(self.paid, self.past_due, self.uncollected + 1)
        if collection.outcome is CollectionOutcome.PAID:
            return CollectionReport(self.paid + 1, self.past_due, self.uncollected)
        return CollectionReport(self.paid, self.past_due + 1, self.uncollected)


async def collect_open_invoices(
    collector: Collector, trigger: ChargeTrigger, months: list[str] | None = None
) -> CollectionReport:
    """Charge every finalized invoice not collected yet (each in its own steps; one failure stops none)."""
    async with UnitOfWork(collector.database, read_only=True) as uow:
        open_invoices = await uow.dunning.open_invoices(months)
    report = CollectionReport()
    for partner_id, invoice_id in open_invoices:
        report = report.add(await _collect_quietly(collector, partner_id, invoice_id, trigger))
    return report


async def _collect_quietly(
    collector: Collector, partner_id: str, invoice_id: str, trigger: ChargeTrigger
) -> Collection | None:
    try:
        return await collect_invoice(collector, partner_id=partner_id, invoice_id=invoice_id, trigger=trigger)
    except DomainError as error:
        log.info("invoice %s not collected now: %s", invoice_id, error.message)
        return None


@dataclass(frozen=True)
class DunningReport:
    collected: CollectionReport  # open invoices an earlier run could not charge
    retried: CollectionReport
    licenses_revoked: int
    partners_revoked: int


async def run_dunning(
    database: Database,
    gateway: PaymentGateway,
    *,
    now: datetime,
    policy: CollectionPolicy,
    request_id: str | None = None,
    actor: Actor = DUNNING_ACTOR,
    queue: JobQueue | None = None,
) -> DunningReport:
    """Due collection work. Safe to run as often as you like, and after a crash mid-way. Its events are
    recorded as the dunning job's (`actor`). With a job `queue`, each partner's non-payment revocation is
    its own job instead of being done here."""
    collector = Collector(database, gateway, policy, now, request_id, actor)
    collected = await collect_open_invoices(collector, ChargeTrigger.DUNNING)
    retried = CollectionReport()
    licenses_revoked = partners_revoked = 0
    async with UnitOfWork(database, read_only=True) as uow:
        in_dunning = await uow.dunning.past_due()
    for dunning in in_dunning:
        decision = dunning_decision(
            dunning.past_due_since,
            now,
            retries_done=dunning.retries_done,
            licenses_revoked=dunning.licenses_revoked_at is not None,
            policy=policy,
        )
        if decision.step is DunningStep.RETRY:
            # Count the retry before making it, so a crash mid-retry cannot retry twice the same day.
            async with UnitOfWork(database) as uow:
                await uow.partners.lock(dunning.partner_id)
                await uow.dunning.set_retries(dunning.invoice_id, decision.retries_done)
            retried = retried.add(
                await _collect_quietly(
                    collector, dunning.partner_id, dunning.invoice_id, ChargeTrigger.DUNNING
                )
            )
        elif decision.step is DunningStep.REVOKE and queue is not None:
            await queue.defer(
                REVOKE_FOR_NONPAYMENT, partner_id=dunning.partner_id, invoice_id=dunning.invoice_id
            )
        elif decision.step is DunningStep.REVOKE:
            revoked, finished = await revoke_licenses_for_nonpayment(
                database,
                dunning,
                now=now,
                batch_size=policy.revoke_batch_size,
                request_id=request_id,
                actor=actor,
            )
            licenses_revoked += revoked
            partners_revoked += finished
    return DunningReport(collected, retried, licenses_revoked, partners_revoked)


async def revoke_licenses_for_nonpayment(
    database: Database,
    dunning: Dunning,
    *,
    now: datetime,
    batch_size: int,
    max_batches: int | None = None,
    request_id: str | None = None,
    actor: Actor = DUNNING_ACTOR,
) -> tuple[int, bool]:
    """Revoke the partner's live licenses `batch_size` at a time, each batch its own transaction (so the
    partner's lock is held briefly), until none is left; then mark the invoice's dunning done and record
    `licenses_revoked`. Returns (licenses revoked now, finished). A run that stops (a crash, or
    `max_batches`) is resumed by the next one: the dunning row is marked only once nothing is left."""
    revoked = batches = 0
    while max_batches is None or batches < max_batches:
        batches += 1
        async with UnitOfWork(database, actor=actor) as uow:
            await uow.partners.lock(dunning.partner_id)
            current = await uow.dunning.dunning(dunning.invoice_id)
            invoice = await uow.invoices.get(dunning.partner_id, dunning.invoice_id)
            if current is None or current.licenses_revoked_at is not None or invoice is None:
                return revoked, False
            if invoice.status is not InvoiceStatus.PAST_DUE:
                return revoked, False  # paid meanwhile: the licenses stay
            batch = await revoke_for_nonpayment(
                uow,
                partner_id=dunning.partner_id,
                invoice_id=dunning.invoice_id,
                at=now,
                request_id=request_id,
                limit=batch_size,
            )
            revoked += len(batch)
            if len(batch) < batch_size:
                await uow.dunning.mark_licenses_revoked(dunning.invoice_id, now)
                uow.collect(invoice_fact(invoice, "licenses_revoked", now), request_id=request_id)
                return revoked, True
    return revoked, False


# --- tasks (registered in app/jobs.py) ---


async def daily_dunning(job: Job) -> None:
    """The periodic dunning run: collect, retry on the dunning days, queue non-payment revocations."""
    report = await run_dunning(
        job.database,
        job.gateway,
        now=job.clock.now(),
        policy=job.policy,
        request_id=job.request_id,
        actor=job.recorded_as,
        queue=job.queue,
    )
    log.info("dunning: %s", report)


async def revoke_for_nonpayment_job(job: Job, *, partner_id: str, invoice_id: str) -> None:
    """Revoke a past-due partner's licenses in batches; a job that dies mid-way is resumed where it
    stopped (the invoice's dunning is marked done only once nothing is left)."""
    async with UnitOfWork(job.database, read_only=True) as uow:
        dunning = await uow.dunning.dunning(invoice_id)
    if dunning is None or dunning.partner_id != partner_id:
        return
    await revoke_licenses_for_nonpayment(
        job.database,
        dunning,
        now=job.clock.now(),
        batch_size=job.policy.revoke_batch_size,
        request_id=job.request_id,
        actor=job.recorded_as,
    )
