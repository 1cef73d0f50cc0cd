"""Dated prices at scale: the month close of one partner with 100k licenses, with constant prices and
then with two price changes in the month (every product, July 10 and July 20), and the invoice PDF of
that 100k-day-line invoice (its lines are per product and price, so the PDF stays small).

    .venv/bin/python bench/catalog_prices.py [--licenses 100000] [--runs 3]
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from billing import (  # bench/billing.py: the same 100k random histories
    JULY,
    run_on_each_database,
    seed,
    timed,
)
from sqlalchemy import delete, func, select

from app.demo import DEMO_CATALOG
from app.invoice_pdf import render_invoice_pdf
from domain.clock import SettableClock
from domain.principals import Principal
from domain.support import SupportContact
from persistence import migrate
from persistence.database import Database
from persistence.invoices import invoice_day_lines, invoice_lines, invoices
from persistence.products import product_prices
from persistence.unit_of_work import UnitOfWork
from resolvers.billing import finalize_partner_month
from resolvers.context import RequestContext
from resolvers.invoices import invoice_document

CLOSED_AT = datetime(2026, 8, 2, tzinfo=UTC)
CHANGES = (date(2026, 7, 10), date(2026, 7, 20))


async def measure(url: str, count: int, runs: int) -> None:
    await migrate.upgrade_async(url)
    database = Database(url)
    partner_id = await seed(database, count)

    async def reopen() -> None:
        async with UnitOfWork(database) as uow:
            ids = select(invoices.c.id).where(invoices.c.partner_id == partner_id).scalar_subquery()
            await uow.connection.execute(
                delete(invoice_day_lines).where(invoice_day_lines.c.invoice_id.in_(ids))
            )
            await uow.connection.execute(delete(invoice_lines).where(invoice_lines.c.invoice_id.in_(ids)))
            await uow.connection.execute(delete(invoices).where(invoices.c.partner_id == partner_id))

    async def close() -> None:
        await reopen()
        await finalize_partner_month(database, partner_id, JULY, now=CLOSED_AT)

    constant_ms = await timed(runs, close)
    async with UnitOfWork(database) as uow:
        for number, change in enumerate(CHANGES, 1):
            await uow.connection.execute(
                product_prices.insert(),
                [
                    {
                        "product_slug": price.product_slug,
                        "currency": "usd",
                        "effective_from": change,
                        "daily_price_micros": price.daily_price_micros + 1_000 * number,
                    }
                    for entry in DEMO_CATALOG
                    for price in entry.prices
                    if price.currency == "usd"
                ],
            )
    changed_ms = await timed(runs, close)

    context = RequestContext(
        database=database,
        clock=SettableClock(CLOSED_AT),
        principal=Principal(token_id="tok_bench", partner_id=None, is_staff=True),
        request_id="bench",
        support=SupportContact("", "", ""),
    )
    async with UnitOfWork(database, read_only=True) as uow:
        invoice_id = (
            await uow.connection.execute(select(invoices.c.id).where(invoices.c.partner_id == partner_id))
        ).scalar_one()
        day_lines = (
            await uow.connection.execute(
                select(func.count()).where(invoice_day_lines.c.invoice_id == invoice_id)
            )
        ).scalar_one()
    document = await invoice_document(context, invoice_id=invoice_id)
    sizes: list[int] = []

    async def render() -> None:
        sizes.append(len(render_invoice_pdf(document)))

    pdf_ms = await timed(runs * 3, render)
    await database.dispose()

    kind = url.split(":", 1)[0]
    print(f"[{kind}] {count:,} licenses, {JULY}; medians:")
    print(f"  month close, one price all month       {constant_ms:8.1f} ms")
    print(f"  month close, two price changes         {changed_ms:8.1f} ms   {changed_ms / constant_ms:5.2f}x")
    print(
        f"  invoice PDF ({len(document.invoice.lines)} lines, {day_lines:,} day-lines) "
        f"{pdf_ms:8.1f} ms   {pdf_ms / changed_ms:5.3f}x the close, {sizes[-1]:,} bytes"
    )


def main() -> None:
    run_on_each_database(measure, __doc__, 3)


if __name__ == "__main__":
    main()
