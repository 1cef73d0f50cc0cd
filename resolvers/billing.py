"""Billing use cases: the live estimate of a month, and closing one partner's month into its invoice
(resolvers/billing_runs.py does it for every partner, in background jobs, then charges them)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from sqlalchemy.exc import IntegrityError

from domain.actors import MONTH_CLOSE, Actor
from domain.billing import (
    BillingMonth,
    DayLine,
    LinePlan,
    MonthSums,
    ProductLine,
    Statement,
    StatementParts,
    build_statement,
)
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
from persistence.database import Database
from persistence.invoices import DAY_LINE_CURSOR
from persistence.pagination import Page, page_size
from persistence.unit_of_work import UnitOfWork
from resolvers.context import RequestContext

# The earliest zone on Earth (UTC+14): before the month is over there, no partner's month is.
EARLIEST_ZONE = "Pacific/Kiritimati"
# Finalizing a month without a token (the CLI, a scheduled run) is this system job's work.
MONTH_CLOSE_ACTOR = Actor.system(MONTH_CLOSE)


@dataclass(frozen=True)
class Estimate:
    """A month's bill for a partner: live for open months (`sums`, with the parts asked for), as invoiced
    once the month is closed (`statement`)."""

    partner: Partner
    month: BillingMonth
    invoice: Invoice | None
    statement: Statement | None = None  # a closed month's, without day-lines (paged: `day_lines_page`)
    sums: MonthSums | None = None  # an open month's, whose allocation prices the paged day-lines

    @property
    def currency(self) -> str:
        return self.invoice.currency if self.invoice else self.partner.currency

    @property
    def zone(self) -> str:
        return self.invoice.zone if self.invoice else self.partner.billing_zone

    @property
    def bill(self) -> Statement | MonthSums:
        """What the estimate answers from: its license-days, total, counts and costs."""
        found = self.statement or self.sums
        if found is None:
            raise ValueError("an estimate carries a closed month's statement or an open month's sums")
        return found

    @property
    def lines(self) -> Sequence[ProductLine | LinePlan]:
        bill = self.bill
        return bill.product_lines if isinstance(bill, Statement) else bill.lines


async def billing_estimate(
    ctx: RequestContext, *, month: str | None, parts: StatementParts = StatementParts.ALL
) -> Estimate:
    """The month's bill; for an open month, only the `parts` asked for are read."""
    partner_id = ctx.partner_id()
    async with ctx.reader() as uow:
        partner = await uow.partners.get(partner_id)
        if partner is None:
            raise DomainError(ErrorCode.NOT_FOUND, "The partner of this token no longer exists.")
        now = ctx.clock.now()
        billing_month = (
            BillingMonth.parse(month) if month else BillingMonth.containing(now, partner.billing_zone)
        )
        # Only a month over in the partner's zone can have been invoiced (`finalize_partner_month`):
        # the current month's estimate, the dashboard's, needs no look for its invoice.
        invoice = (
            await uow.invoices.for_month(partner_id, billing_month)
            if billing_month.is_over(now, partner.billing_zone)
            else None
        )
        if invoice is not None:
            # A closed month answers what was billed (its stored totals), not a recomputation.
            return Estimate(partner, billing_month, invoice, statement=invoiced_statement(invoice))
        sums = await estimated_sums(uow, partner, billing_month, parts)
    return Estimate(partner, billing_month, None, sums=sums)


async def estimated_sums(
    uow: UnitOfWork, partner: Partner, month: BillingMonth, parts: StatementParts = StatementParts.ALL
) -> MonthSums:
    """An open month's lines and total as SQL sums over the stored billed-day spans, with the `parts`
    asked for (no day-lines)."""
    prices = await uow.billing.price_book(partner.currency)
    return await uow.billing.month_sums(
        partner.id, prices, month, partner.billing_zone, SUPPORTED_CURRENCIES[partner.currency], parts
    )


async def live_statement(uow: UnitOfWork, partner: Partner, month: BillingMonth) -> Statement:
    """The month's full statement with every day-line, computed in Python (what a month close stores)."""
    start, end = month.bounds(partner.billing_zone)
    holdings = await uow.billing.holdings(partner.id, start, end)
    prices = await uow.billing.price_book(partner.currency)
    return build_statement(
        holdings, prices, month, partner.billing_zone, SUPPORTED_CURRENCIES[partner.currency]
    )


async def day_lines_page(
    ctx: RequestContext, estimate: Estimate, *, first: int | None, after: str | None, count_total: bool
) -> Page[DayLine]:
    """A page of the estimate's day-lines, read from the database: an invoice's stored ones, or an open
    month's computed by SQL with the estimate's allocation. The cursor is the position in their order."""
    async with ctx.reader() as uow:
        if estimate.invoice is not None:
            return await uow.invoices.day_lines(
                estimate.invoice.id, first=first, after=after, count_total=count_total
            )
        if estimate.sums is None:
            raise ValueError("an open month's estimate carries its sums")
        size = page_size(first)
        start = 0 if after is None else DAY_LINE_CURSOR.decode(after)[0] + 1
        prices = await uow.billing.price_book(estimate.partner.currency)
        lines = await uow.billing.day_lines(
            estimate.partner.id, prices, estimate.sums, offset=start, limit=size + 1
        )
        total = (
            await uow.billing.day_line_count(estimate.partner.id, prices, estimate.month)
            if count_total
            else None
        )
    return Page(
        items=[
            (DAY_LINE_CURSOR.encode([position]), line) for position, line in enumerate(lines[:size], start)
        ],
        has_next_page=len(lines) > size,
        has_previous_page=after is not None,
        total_count=total,
    )


class CloseOutcome(StrEnum):
    CLOSED = "closed"
    ALREADY_CLOSED = "already_closed"
    PENDING = "pending"  # the month has not ended yet in the partner's zone


@dataclass(frozen=True)
class MonthClose:
    outcome: CloseOutcome
    invoice: Invoice | None = None  # the invoice this close finalized (CLOSED only)


async def finalize_partner_month(
    database: Database,
    partner_id: str,
    month: BillingMonth,
    *,
    now: datetime,
    request_id: str | None = None,
    actor: Actor = MONTH_CLOSE_ACTOR,
) -> MonthClose:
    """Finalize one partner's month in its own transaction (a crash leaves others to a re-run), answering
    the outcome and the invoice it finalized (a billing run charges it next, without reading it again)."""
    try:
        async with UnitOfWork(database, actor=actor) as uow:
            await uow.partners.lock(partner_id)
            partner = await uow.partners.get(partner_id)
            if partner is None or not month.is_over(now, partner.billing_zone):
                return MonthClose(CloseOutcome.PENDING)
            if await uow.invoices.exists(partner_id, month):
                return MonthClose(CloseOutcome.ALREADY_CLOSED)
            statement = await live_statement(uow, partner, month)
            draft = draft_invoice(partner, month, statement, now)
            # Stored under its own id as a provisional number first: the year's counter row is locked
            # from taking the number to the commit, so it is taken last, after the day-lines are
            # written, and concurrent closes wait on it only for an update and the commit.
            await uow.invoices.add(finalize_invoice(draft, at=now)[0], statement)
            number = invoice_number(now.year, await uow.invoices.next_number(now.year))
            await uow.invoices.renumber(draft.id, number)
            invoice, events = finalize_invoice(replace(draft, number=number), at=now)
            for event in events:
                uow.collect(event, request_id=request_id)
            return MonthClose(CloseOutcome.CLOSED, invoice)
    except IntegrityError:
        # Another closer won the race for this (partner, month); the unique constraint kept one invoice.
        return MonthClose(CloseOutcome.ALREADY_CLOSED)


def draft_invoice(partner: Partner, month: BillingMonth, statement: Statement, now: datetime) -> Invoice:
    """The month's statement as an invoice still in draft, numbered by its own id until it is given
    the year's next number; `finalize_invoice` moves it on."""
    start, end = month.bounds(partner.billing_zone)
    invoice_id = "inv_" + secrets.token_hex(8)
    return Invoice(
        id=invoice_id,
        partner_id=partner.id,
        month=month,
        number=invoice_id,
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
