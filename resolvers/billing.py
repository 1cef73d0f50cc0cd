"""Billing use cases: the live estimate of a month, and closing one partner's month into its invoice
(resolvers/billing_runs.py does it for every partner, in background jobs, then charges them)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy.exc import IntegrityError

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
from persistence.database import Database
from persistence.invoices import DAY_LINE_CURSOR
from persistence.pagination import Page, page_size
from persistence.unit_of_work import UnitOfWork
from resolvers.context import RequestContext

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
