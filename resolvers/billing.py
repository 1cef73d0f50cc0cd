"""Billing use cases: the live estimate of a month, and closing a month into invoices (then charging them)."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy.exc import IntegrityError

from domain.access import Permission
from domain.billing import BillingMonth, DayLine, Statement, build_statement
from domain.errors import DomainError, ErrorCode
from domain.invoices import (
    Invoice,
    InvoiceStatus,
    finalize_invoice,
    invoice_due_at,
    invoice_number,
    invoiced_statement,
)
from domain.partners import SUPPORTED_CURRENCIES, Partner
from domain.payments import ChargeTrigger
from persistence.database import Database
from persistence.invoices import DAY_LINE_CURSOR
from persistence.pagination import Page, page_size
from persistence.unit_of_work import UnitOfWork
from resolvers.charging import Collector
from resolvers.context import RequestContext
from resolvers.dunning import CollectionReport, collect_open_invoices
from resolvers.idempotency import idempotent_call, replay_race, staff_scope, store_outcome, stored_outcome

# The earliest zone on Earth (UTC+14): before the month is over there, no partner's month is.
EARLIEST_ZONE = "Pacific/Kiritimati"


@dataclass(frozen=True)
class Estimate:
    """A month's bill for a partner: live for open months, as invoiced once the month is closed."""

    partner: Partner
    month: BillingMonth
    statement: Statement
    invoice: Invoice | None

    @property
    def currency(self) -> str:
        return self.invoice.currency if self.invoice else self.partner.currency

    @property
    def zone(self) -> str:
        return self.invoice.zone if self.invoice else self.partner.billing_zone


async def billing_estimate(ctx: RequestContext, *, month: str | None) -> Estimate:
    partner_id = ctx.partner_id()
    async with ctx.reader() as uow:
        partner = await uow.partners.get(partner_id)
        if partner is None:
            raise DomainError(ErrorCode.NOT_FOUND, "The partner of this token no longer exists.")
        billing_month = (
            BillingMonth.parse(month)
            if month
            else BillingMonth.containing(ctx.clock.now(), partner.billing_zone)
        )
        invoice = await uow.invoices.for_month(partner_id, billing_month)
        if invoice is not None:
            # A closed month answers what was billed, not a recomputation over today's data.
            day_lines = await uow.invoices.all_day_lines(invoice.id)
            statement = invoiced_statement(invoice, day_lines)
        else:
            statement = await live_statement(uow, partner, billing_month)
    return Estimate(partner, billing_month, statement, invoice)


async def live_statement(uow: UnitOfWork, partner: Partner, month: BillingMonth) -> Statement:
    start, end = month.bounds(partner.billing_zone)
    holdings = await uow.billing.holdings(partner.id, start, end)
    prices = await uow.billing.price_book(partner.currency)
    return build_statement(
        holdings, prices, month, partner.billing_zone, SUPPORTED_CURRENCIES[partner.currency]
    )


def day_lines_page(statement: Statement, *, first: int | None, after: str | None) -> Page[DayLine]:
    """Page through a computed statement's day-lines; the cursor is the position in its fixed order."""
    size = page_size(first)
    start = 0 if after is None else DAY_LINE_CURSOR.decode(after)[0] + 1
    lines = statement.day_lines
    return Page(
        items=[
            (DAY_LINE_CURSOR.encode([position]), lines[position])
            for position in range(start, min(start + size, len(lines)))
        ],
        has_next_page=start + size < len(lines),
        has_previous_page=after is not None,
        total_count=len(lines),
    )


class CloseOutcome(StrEnum):
    CLOSED = "closed"
    ALREADY_CLOSED = "already_closed"
    PENDING = "pending"  # the month has not ended yet in the partner's zone


@dataclass(frozen=True)
class CloseReport:
    month: BillingMonth
    closed: int
    already_closed: int
    pending: int
    collection: CollectionReport = field(default_factory=CollectionReport)

    def outcome(self) -> dict[str, Any]:
        """The report as an idempotency record."""
        return {
            "closed": self.closed,
            "already_closed": self.already_closed,
            "pending": self.pending,
            "collection": {
                "paid": self.collection.paid,
                "past_due": self.collection.past_due,
                "uncollected": self.collection.uncollected,
            },
        }


async def close_billing_month(
    ctx: RequestContext, *, month: str, idempotency_key: str | None = None
) -> CloseReport:
    """Staff: finalize every partner's month into an invoice, then charge each open invoice of the month.

    Safe to re-run: each partner's finalization commits alone, and each charge is its own attempt. With
    an idempotency key, a replay answers the first run's report instead of running again.
    """
    staff = ctx.require_staff(Permission.MONTH_CLOSE)
    call = idempotent_call(
        staff_scope(staff),
        idempotency_key,
        "closeBillingMonth",
        {"month": month},
    )
    billing_month = BillingMonth.parse(month)
    async with ctx.reader() as uow:
        outcome = await stored_outcome(uow, call)
    if outcome is not None:
        return CloseReport(
            month=billing_month,
            closed=outcome["closed"],
            already_closed=outcome["already_closed"],
            pending=outcome["pending"],
            collection=CollectionReport(**outcome["collection"]),
        )
    report = await close_month(
        Collector(
            ctx.database, ctx.payments(), ctx.collection, ctx.clock.now(), ctx.request_id, ctx.observer
        ),
        billing_month,
        progress=ctx.observer.month_close_progress,
    )
    async with replay_race(), ctx.unit_of_work() as uow:
        await store_outcome(uow, call, report.outcome(), ctx.clock.now())
    return report


async def close_month(
    collector: Collector, month: BillingMonth, *, progress: Callable[[int, int], None] | None = None
) -> CloseReport:
    """Finalize `month` for every partner (one transaction each; `progress(done, total)` after each),
    then charge each open invoice of the month."""
    now, database = collector.now, collector.database
    month.require_over(now, EARLIEST_ZONE)
    partner_ids = await partners_to_close(database, month)
    if progress is not None:
        progress(0, len(partner_ids))
    outcomes = []
    for done, partner_id in enumerate(partner_ids, 1):
        outcomes.append(
            await close_partner_month(database, partner_id, month, now=now, request_id=collector.request_id)
        )
        if progress is not None:
            progress(done, len(partner_ids))
    collection = await collect_open_invoices(collector, ChargeTrigger.MONTH_CLOSE, [str(month)])
    return CloseReport(
        month=month,
        closed=outcomes.count(CloseOutcome.CLOSED),
        already_closed=outcomes.count(CloseOutcome.ALREADY_CLOSED),
        pending=outcomes.count(CloseOutcome.PENDING),
        collection=collection,
    )


async def partners_to_close(database: Database, month: BillingMonth) -> list[str]:
    """Partners enrolled before the month ended anywhere (the latest zone ends last)."""
    async with UnitOfWork(database, read_only=True) as uow:
        return await uow.partners.ids_created_before(month.next().bounds("Etc/GMT+12")[0])


async def close_partner_month(
    database: Database, partner_id: str, month: BillingMonth, *, now: datetime, request_id: str | None = None
) -> CloseOutcome:
    """Finalize one partner's month in its own transaction (a crash leaves others to a re-run)."""
    try:
        async with UnitOfWork(database) as uow:
            await uow.partners.lock(partner_id)
            partner = await uow.partners.get(partner_id)
            if partner is None or not month.is_over(now, partner.billing_zone):
                return CloseOutcome.PENDING
            if await uow.invoices.exists(partner_id, month):
                return CloseOutcome.ALREADY_CLOSED
            statement = await live_statement(uow, partner, month)
            number = invoice_number(now.year, await uow.invoices.next_number(now.year))
            invoice, events = finalize_invoice(draft_invoice(partner, month, statement, now, number), at=now)
            await uow.invoices.add(invoice, statement)
            for event in events:
                uow.collect(event, request_id=request_id)
            return CloseOutcome.CLOSED
    except IntegrityError:
        # Another closer won the race for this (partner, month); the unique constraint kept one invoice.
        return CloseOutcome.ALREADY_CLOSED


def draft_invoice(
    partner: Partner, month: BillingMonth, statement: Statement, now: datetime, number: str
) -> Invoice:
    """The month's statement as an invoice still in draft; `finalize_invoice` moves it on."""
    start, end = month.bounds(partner.billing_zone)
    return Invoice(
        id="inv_" + secrets.token_hex(8),
        partner_id=partner.id,
        month=month,
        number=number,
        status=InvoiceStatus.DRAFT,
        zone=partner.billing_zone,
        currency=partner.currency,
        period_start=start,
        period_end=end,
        finalized_at=now,
        due_at=invoice_due_at(now),
        paid_at=None,
        total=statement.total,
        license_days=statement.license_days,
        counts=statement.counts,
        costs=statement.costs,
        lines=statement.product_lines,
    )
