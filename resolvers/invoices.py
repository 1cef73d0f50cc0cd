"""Invoice use cases: list and read a partner's invoices, page or export their day-lines."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from domain.billing import DayLine
from domain.errors import DomainError, ErrorCode
from domain.invoices import Invoice, InvoiceStatus
from domain.money import format_micros, format_minor_units
from domain.partners import SUPPORTED_CURRENCIES
from persistence.pagination import Page
from persistence.unit_of_work import UnitOfWork
from resolvers.context import RequestContext


async def list_invoices(
    ctx: RequestContext,
    *,
    statuses: Sequence[InvoiceStatus],
    first: int | None,
    after: str | None,
    partner_id: str | None = None,
) -> Page[Invoice]:
    """The caller's invoices, newest first; staff name the partner."""
    partner_id = ctx.readable_partner(partner_id)
    async with ctx.reader() as uow:
        return await uow.invoices.page(partner_id, statuses=statuses, first=first, after=after)


async def get_invoice(ctx: RequestContext, *, invoice_id: str) -> Invoice:
    """The caller's invoice; staff read any partner's."""
    owner = ctx.records_owner()
    async with ctx.reader() as uow:
        return await owned_invoice(uow, owner, invoice_id)


async def owned_invoice(
    uow: UnitOfWork, partner_id: str | None, invoice_id: str, *, for_update: bool = False
) -> Invoice:
    """The partner's invoice (None: anyone's, for staff); another partner's id answers exactly like an
    unknown one."""
    invoice = await uow.invoices.get(partner_id, invoice_id, for_update=for_update)
    if invoice is None:
        raise DomainError(ErrorCode.NOT_FOUND, f"No invoice '{invoice_id}'.", field="id")
    return invoice


async def invoice_day_lines(
    ctx: RequestContext, *, invoice_id: str, first: int | None, after: str | None
) -> Page[DayLine]:
    owner = ctx.records_owner()
    async with ctx.reader() as uow:
        await owned_invoice(uow, owner, invoice_id)
        return await uow.invoices.day_lines(invoice_id, first=first, after=after)


@dataclass(frozen=True)
class InvoiceDocument:
    """What an invoice's printed document shows besides the invoice itself."""

    invoice: Invoice
    partner_name: str
    product_names: dict[str, str]


async def invoice_document(ctx: RequestContext, *, invoice_id: str) -> InvoiceDocument:
    """The caller's invoice (staff: any) with its partner's and products' names, for the PDF."""
    owner = ctx.records_owner()
    async with ctx.reader() as uow:
        invoice = await owned_invoice(uow, owner, invoice_id)
        partner = await uow.partners.get(invoice.partner_id)
        products = await uow.products.get_many(line.product_slug for line in invoice.lines)
    return InvoiceDocument(
        invoice,
        partner.name if partner is not None else invoice.partner_id,
        {slug: product.name for slug, product in products.items()},
    )


CSV_BATCH = 2_000  # day-lines read and sent at a time
CSV_HEADER = (
    "invoice",
    "month",
    "license_key",
    "product",
    "site",
    "days",
    "amount_minor",
    "amount",
    "currency",
    # Added later, at the end so existing readers keep their columns: the holding billed (a key held
    # twice in a month has two rows) and the daily price of these days (a price change splits them).
    "holding_id",
    "daily_price",
)


async def invoice_day_lines_csv(
    ctx: RequestContext, *, invoice_id: str
) -> tuple[Invoice, AsyncIterator[str]]:
    """Every day-line of an invoice as CSV text, streamed in batches (each read in its own short
    transaction: stored day-lines never change); the amount column adds up exactly to the total."""
    owner = ctx.records_owner()
    async with ctx.reader() as uow:
        invoice = await owned_invoice(uow, owner, invoice_id)
    return invoice, _csv_chunks(ctx, invoice)


async def _csv_chunks(ctx: RequestContext, invoice: Invoice) -> AsyncIterator[str]:
    exponent = SUPPORTED_CURRENCIES[invoice.currency]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    position = -1
    while True:
        async with ctx.reader() as uow:
            batch = await uow.invoices.day_lines_after(invoice.id, position, CSV_BATCH)
        for _, line in batch:
            writer.writerow(
                (
                    invoice.number,
                    str(invoice.month),
                    line.key,
                    line.product_slug,
                    line.site or "",
                    line.days,
                    line.amount,
                    format_minor_units(line.amount, exponent),
                    invoice.currency,
                    line.holding_id,
                    format_micros(line.daily_price_micros),
                )
            )
        yield out.getvalue()
        out.seek(0)
        out.truncate()
        if len(batch) < CSV_BATCH:
            return
        position = batch[-1][0]
