"""Support's back-office: staff find a partner, see its standing, licenses, cards and bills."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from domain.billing import BillingMonth
from domain.clock import SettableClock
from persistence.database import Database
from resolvers.billing import CloseOutcome, finalize_partner_month
from tests.integration.conftest import Api, PartnerAccess, enrol, enrol_in_good_standing
from tests.integration.license_operations import issue

PARTNERS = """
query($search: String, $standing: StandingState, $first: Int, $after: String) {
  partners(search: $search, standing: $standing, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor } nodes { id name standing { state } }
  }
}"""
PARTNER = """
query($id: ID!) {
  partner(id: $id) {
    id name standing { state }
    licenseCounts { issued all }
    cards { brand last4 primary }
    invoices(first: 5) { totalCount nodes { id number dayLinesCsvPath } }
  }
}"""
INVOICE = """
query($id: ID!) {
  invoice(id: $id) { id number dayLines(first: 10) { nodes { holdingId licenseKey license { id } } } }
}"""


async def closed_invoice(database: Database, access: PartnerAccess) -> None:
    july, now = BillingMonth(2026, 7), datetime(2026, 8, 1, 1, 0, tzinfo=UTC)
    assert (await finalize_partner_month(database, access.id, july, now=now)).outcome is CloseOutcome.CLOSED


async def test_staff_find_a_partner_by_name_and_read_its_standing_licenses_cards_and_invoices(
    api: Api, staff_token: str, database: Database, clock: SettableClock
) -> None:
    name = f"Backoffice {secrets.token_hex(3)}"
    access = await enrol_in_good_standing(api, staff_token, database, clock, name=name)
    await issue(api, access.token, "jetpack-backup", 2)
    await closed_invoice(database, access)

    found = await api.data(PARTNERS, {"search": name.upper(), "standing": "GOOD"}, staff_token)
    assert [node["id"] for node in found["partners"]["nodes"]] == [access.id]
    nobody = await api.data(PARTNERS, {"search": name, "standing": "PAST_DUE"}, staff_token)
    assert nobody["partners"]["totalCount"] == 0

    seen = (await api.data(PARTNER, {"id": access.id}, staff_token))["partner"]
    assert seen["standing"] == {"state": "GOOD"}
    assert seen["licenseCounts"] == {"issued": 2, "all": 2}
    assert seen["cards"] == [{"brand": "visa", "last4": "4242", "primary": True}]
    (invoice,) = seen["invoices"]["nodes"]

    # Staff read the partner's bill, its day-lines (naming each holding) and its CSV.
    read = (await api.data(INVOICE, {"id": invoice["id"]}, staff_token))["invoice"]
    assert read["number"] == invoice["number"]
    assert all(node["holdingId"] == node["license"]["id"] for node in read["dayLines"]["nodes"])
    csv = await api.client.get(invoice["dayLinesCsvPath"], headers={"Authorization": f"Bearer {staff_token}"})
    assert csv.status_code == 200
    header, *rows = csv.text.splitlines()
    assert header.split(",")[-2:] == ["holding_id", "daily_price"]
    assert sorted(row.split(",")[-2] for row in rows) == sorted(
        node["holdingId"] for node in read["dayLines"]["nodes"]
    )


async def test_partners_pages_by_name_and_is_staff_only(api: Api, staff_token: str) -> None:
    prefix = f"Paged {secrets.token_hex(3)}"
    ids = [(await enrol(api, staff_token, f"{prefix} {letter}")).id for letter in "CAB"]
    first = await api.data(PARTNERS, {"search": prefix, "first": 2}, staff_token)
    rest = await api.data(
        PARTNERS,
        {"search": prefix, "first": 2, "after": first["partners"]["pageInfo"]["endCursor"]},
        staff_token,
    )
    names = [node["name"] for node in first["partners"]["nodes"] + rest["partners"]["nodes"]]
    assert names == [f"{prefix} A", f"{prefix} B", f"{prefix} C"]
    assert first["partners"]["pageInfo"]["hasNextPage"] is True

    partner_token = (await enrol(api, staff_token)).token
    refused = await api.call(PARTNERS, {}, partner_token)
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    hidden = await api.call(PARTNER, {"id": ids[0]}, partner_token)
    assert hidden["errors"][0]["extensions"]["code"] == "NOT_FOUND"
