"""The invoice PDF, read back as text: number, partner, period, zone, lines, total, status."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from pypdf import PdfReader

from domain.billing import BillingMonth
from domain.clock import SettableClock
from persistence.database import Database
from resolvers.billing import CloseOutcome, finalize_partner_month
from tests.integration.conftest import Api, enrol, enrol_in_good_standing
from tests.integration.license_operations import issue

INVOICES = """
{ invoices(first: 1) { nodes { id number pdfUrl status total { formatted } licenseDays
  lines { licenseDays dailyPrice amount { formatted } product { name } } } } }"""


async def test_invoice_pdf_shows_number_partner_lines_and_total_and_only_to_its_readers(
    api: Api, staff_token: str, database: Database, clock: SettableClock
) -> None:
    access = await enrol_in_good_standing(
        api, staff_token, database, clock, name="Pdf Agency", zone="Europe/Paris"
    )
    await issue(api, access.token, "jetpack-backup", 3)
    await issue(api, access.token, "jetpack-scan", 1)
    now = datetime(2026, 8, 1, 1, 0, tzinfo=UTC)
    assert (
        await finalize_partner_month(database, access.id, BillingMonth(2026, 7), now=now)
    ).outcome is CloseOutcome.CLOSED
    (invoice,) = (await api.data(INVOICES, token=access.token))["invoices"]["nodes"]

    response = await api.client.get(invoice["pdfUrl"], headers={"Authorization": f"Bearer {access.token}"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pdf"
    text = "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)
    assert f"Invoice {invoice['number']}" in text
    assert "Pdf Agency" in text
    assert "2026-07" in text and "Europe/Paris" in text
    assert f"Status: {invoice['status'].lower()}" in text
    for line in invoice["lines"]:
        name, days, price = line["product"]["name"], line["licenseDays"], line["dailyPrice"]
        row = f"{name} {days} {price} USD {line['amount']['formatted']} USD"
        assert row in text
    assert f"Total {invoice['licenseDays']} {invoice['total']['formatted']} USD" in text

    as_staff = await api.client.get(invoice["pdfUrl"], headers={"Authorization": f"Bearer {staff_token}"})
    assert as_staff.status_code == 200
    stranger = await enrol(api, staff_token, "Stranger")
    hidden = await api.client.get(invoice["pdfUrl"], headers={"Authorization": f"Bearer {stranger.token}"})
    assert hidden.status_code == 404
    assert (await api.client.get(invoice["pdfUrl"])).status_code == 401
