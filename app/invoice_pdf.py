"""Invoice PDFs, drawn with fpdf2: the header, one row per product line, the total and the status.

Lines are per product and daily price, so the document stays a page or two whatever the number of
licenses; the per-license day-lines are in the CSV.
"""

from __future__ import annotations

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from domain.invoices import InvoiceStatus
from domain.money import format_micros, format_minor_units
from domain.partners import SUPPORTED_CURRENCIES
from resolvers.invoices import InvoiceDocument

COLUMNS = (("Product", 78), ("License-days", 30), ("Daily price", 36), ("Amount", 36))
ROW_HEIGHT = 7


def render_invoice_pdf(document: InvoiceDocument) -> bytes:
    """The invoice as a PDF: number, partner, period and zone, lines, total, status and paid date."""
    invoice = document.invoice
    exponent = SUPPORTED_CURRENCIES[invoice.currency]
    currency = invoice.currency.upper()
    pdf = FPDF(format="A4")
    pdf.set_title(f"Invoice {invoice.number}")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    _line(pdf, f"Invoice {invoice.number}")
    pdf.set_font("Helvetica", size=10)
    for text in (
        f"Partner: {document.partner_name} ({invoice.partner_id})",
        f"Period: {invoice.month}, {invoice.period_start:%Y-%m-%d %H:%M} to "
        f"{invoice.period_end:%Y-%m-%d %H:%M} UTC",
        f"Billing zone: {invoice.zone}",
        f"Finalized: {invoice.finalized_at:%Y-%m-%d %H:%M} UTC",
        f"Status: {invoice.status.value}",
    ):
        _line(pdf, text)
    if invoice.paid_at is not None and invoice.status is InvoiceStatus.PAID:
        _line(pdf, f"Paid: {invoice.paid_at:%Y-%m-%d %H:%M} UTC")
    pdf.ln(4)
    pdf.set_font("Helvetica", "B", 10)
    _row(pdf, [title for title, _ in COLUMNS])
    pdf.set_font("Helvetica", size=10)
    for line in invoice.lines:
        _row(
            pdf,
            [
                document.product_names.get(line.product_slug, line.product_slug),
                str(line.license_days),
                f"{format_micros(line.daily_price_micros)} {currency}",
                f"{format_minor_units(line.amount, exponent)} {currency}",
            ],
        )
    pdf.set_font("Helvetica", "B", 11)
    _row(
        pdf,
        ["Total", str(invoice.license_days), "", f"{format_minor_units(invoice.total, exponent)} {currency}"],
    )
    return bytes(pdf.output())


def _line(pdf: FPDF, text: str) -> None:
    pdf.cell(0, ROW_HEIGHT, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _row(pdf: FPDF, cells: list[str]) -> None:
    for (_, width), text in zip(COLUMNS, cells, strict=True):
        pdf.cell(width, ROW_HEIGHT, text, border="B", align="L" if width == COLUMNS[0][1] else "R")
    pdf.ln(ROW_HEIGHT)
