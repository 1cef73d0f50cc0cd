"""Billing runs in the API (staff): `billingRun(id)`, `billingRuns` and the `billingRunProgress`
subscription; `closeBillingMonth` (schema/billing.py) starts a run and answers it at once."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import Annotated

import strawberry

from domain.billing_runs import BillingRun as DomainBillingRun
from domain.billing_runs import PartnerState, RunPartner, RunStatus
from resolvers import billing_runs
from schema.actors import Actor
from schema.context import Info
from schema.enums import described_enum

RunId = Annotated[strawberry.ID, strawberry.argument(description="The billing run's id.")]

described_enum(
    RunStatus,
    name="BillingRunStatus",
    description="Whether a billing run still has partners to do.",
    values={
        RunStatus.RUNNING: "Some partners are still to close or charge.",
        RunStatus.FINISHED: "Every partner is done or given up.",
    },
)
described_enum(
    PartnerState,
    name="BillingRunPartnerState",
    description="Where one partner stands in a billing run.",
    values={
        PartnerState.PENDING: "Not tried yet.",
        PartnerState.RETRYING: "Failed at least once; the job engine tries again.",
        PartnerState.DONE: "Closed (and charged, if it had an open invoice).",
        PartnerState.FAILED: "Failed on every try: reported with its reason; the next run tries again.",
    },
)


@strawberry.type(description="A partner whose close failed in a run, and why.")
class BillingRunFailure:
    partner_id: strawberry.ID = strawberry.field(description="The partner.")
    state: PartnerState = strawberry.field(description="RETRYING (it is tried again) or FAILED (given up).")
    tries: int = strawberry.field(description="How many times it was tried.")
    reason: str | None = strawberry.field(description="The error of its last try.")
    at: datetime | None = strawberry.field(description="When it last failed.")

    @classmethod
    def from_domain(cls, part: RunPartner) -> BillingRunFailure:
        return cls(
            partner_id=strawberry.ID(part.partner_id),
            state=part.state,
            tries=part.tries,
            reason=part.reason,
            at=part.updated_at,
        )


@strawberry.type(
    description="A month close carried out in the background, one partner at a time: finalize each "
    "partner's invoice, then charge it. Each partner counts once in pending, or in the results."
)
class BillingRun:
    id: strawberry.ID = strawberry.field(description="The run.")
    month: str = strawberry.field(description="The month closed, YYYY-MM.")
    status: RunStatus = strawberry.field(description="RUNNING or FINISHED.")
    partners_total: int = strawberry.field(description="Partners enrolled before the month ended.")
    closed: int = strawberry.field(description="Partners whose invoice this run finalized.")
    already_closed: int = strawberry.field(description="Partners invoiced for the month before this run.")
    not_over: int = strawberry.field(description="Partners whose month has not ended yet in their zone.")
    pending: int = strawberry.field(description="Partners still to do (those being retried included).")
    failed: int = strawberry.field(description="Partners whose close failed: being retried, or given up.")
    paid: int = strawberry.field(description="Invoices this run charged successfully.")
    past_due: int = strawberry.field(
        description="Invoices whose every card failed (or with no card): now PAST_DUE, in dunning."
    )
    uncollected: int = strawberry.field(
        description="Invoices left OPEN (Stripe unreachable, or a charge in flight); dunning charges them."
    )
    started_at: datetime = strawberry.field(description="When the run started.")
    finished_at: datetime | None = strawberry.field(description="When the last partner was done.")
    started_by: Actor = strawberry.field(
        description="Who started the run: the staff token (its id and label), or the operator-cli job "
        "for `licensing billing close`. Its partners' invoices are recorded as the month-close job."
    )

    @strawberry.field(description="Partners whose close failed, with the reason (at most 100).")
    async def failures(self, info: Info) -> list[BillingRunFailure]:
        found = await billing_runs.run_failures(info.context.database, str(self.id))
        return [BillingRunFailure.from_domain(part) for part in found]

    @classmethod
    def from_domain(cls, run: DomainBillingRun) -> BillingRun:
        counts = run.counts
        return cls(
            id=strawberry.ID(run.id),
            month=run.month,
            status=run.status,
            partners_total=counts.partners_total,
            closed=counts.closed,
            already_closed=counts.already_closed,
            not_over=counts.not_over,
            pending=counts.pending,
            failed=counts.failed,
            paid=counts.paid,
            past_due=counts.past_due,
            uncollected=counts.uncollected,
            started_at=run.started_at,
            finished_at=run.finished_at,
            # Only staff read runs, and staff see every actor in full (seen by no partner: None).
            started_by=Actor.of(run.started_as.seen_by(None)),
        )


@strawberry.type
class BillingRunQuery:
    @strawberry.field(description="A billing run, with its counts so far.")
    async def billing_run(self, info: Info, id: RunId) -> BillingRun:
        return BillingRun.from_domain(await billing_runs.billing_run(info.context, str(id)))

    @strawberry.field(description="The latest billing runs (at most 50), newest first.")
    async def billing_runs(self, info: Info) -> list[BillingRun]:
        return [BillingRun.from_domain(run) for run in await billing_runs.billing_runs(info.context)]


@strawberry.type
class BillingRunSubscription:
    @strawberry.subscription(
        description="A billing run now, then each time its counts change; it ends once the run has finished."
    )
    async def billing_run_progress(self, info: Info, id: RunId) -> AsyncGenerator[BillingRun, None]:
        progress = billing_runs.billing_run_progress(info.context, str(id))
        async with contextlib.aclosing(progress):
            async for run in progress:
                yield BillingRun.from_domain(run)
