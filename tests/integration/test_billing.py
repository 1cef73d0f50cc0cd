"""Billing through GraphQL, as the FAQ tells it: days, estimates, month close and invoices."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from domain.billing import BillingMonth
from domain.clock import SettableClock
from persistence.database import Database
from resolvers.billing import CloseOutcome, finalize_partner_month
from tests.integration.billing_run_operations import close_month
from tests.integration.conftest import Api, PartnerAccess, enrol_in_good_standing
from tests.integration.license_operations import (
    ACCEPT_TRANSFER,
    REVOKE,
    START_TRANSFER,
    assign,
    fresh_site,
    issue,
    mutate,
)

ESTIMATE = """
query($month: String) {
  billingEstimate(month: $month) {
    month zone currency invoiced licenseDays
    licenseCounts { assigned unassigned total }
    costs { assigned { amount } unassigned { amount } total { amount formatted } }
    products { product { slug } licenseDays dailyPriceMicros amount { amount } counts { total } }
    dayLines(first: 100) {
      totalCount edges { node { licenseKey site days amount { amount } product { slug } license { key } } }
    }
  }
}"""
INVOICES = """
query {
  invoices(first: 10) {
    totalCount
    nodes {
      id number month status zone currency total { amount } licenseDays paidAt dayLinesCsvPath
      lines { product { slug } licenseDays amount { amount } }
      dayLines(first: 100) { totalCount nodes { licenseKey days amount { amount } } }
    }
  }
}"""
INVOICE = "query($id: ID!) { invoice(id: $id) { id number total { amount } } }"
BACKUP_MICROS = 328767  # jetpack-backup's daily price


def cents(days: int, micros: int = BACKUP_MICROS) -> int:
    """round_half_up(days * micros) from micro-dollars to cents, computed independently of the engine."""
    exact = days * micros
    return (exact + 5_000) // 10_000


async def estimate(api: Api, token: str, month: str | None = "2026-07") -> dict[str, Any]:
    body = await api.data(ESTIMATE, {"month": month}, token)
    result: dict[str, Any] = body["billingEstimate"]
    return result


def days_by_key(result: dict[str, Any]) -> dict[str, int]:
    nodes = [edge["node"] for edge in result["dayLines"]["edges"]]
    assert all(node["license"]["key"] == node["licenseKey"] for node in nodes)
    return {node["licenseKey"]: node["days"] for node in nodes}


async def close_july(api: Api, staff_token: str, clock: SettableClock) -> dict[str, Any]:
    clock.advance_to(datetime(2026, 8, 1, 0, 30, tzinfo=UTC))
    return await close_month(api, "2026-07", staff_token)


async def our_invoices(api: Api, token: str) -> list[dict[str, Any]]:
    body = await api.data(INVOICES, token=token)
    nodes: list[dict[str, Any]] = body["invoices"]["nodes"]
    return nodes


async def test_license_issued_and_never_assigned_is_billed_for_the_whole_month(
    api: Api, good_partner: PartnerAccess
) -> None:
    [key] = await issue(api, good_partner.token)
    result = await estimate(api, good_partner.token)
    assert days_by_key(result) == {key: 31}
    assert result["licenseCounts"] == {"assigned": 0, "unassigned": 1, "total": 1}
    assert result["costs"]["unassigned"]["amount"] == result["costs"]["total"]["amount"] == cents(31)
    assert result["invoiced"] is False


async def test_license_revoked_on_july_10_bills_10_days(
    api: Api, good_partner: PartnerAccess, clock: SettableClock
) -> None:
    [key] = await issue(api, good_partner.token)
    clock.advance_to(datetime(2026, 7, 10, 16, 0, tzinfo=UTC))
    assert (await mutate(api, good_partner.token, REVOKE, key=key))["errors"] == []
    result = await estimate(api, good_partner.token)
    assert days_by_key(result) == {key: 10}
    assert result["costs"]["total"]["amount"] == cents(10)


async def test_license_issued_and_revoked_the_same_day_bills_1_day(
    api: Api, good_partner: PartnerAccess, clock: SettableClock
) -> None:
    clock.advance_to(datetime(2026, 7, 20, 8, 0, tzinfo=UTC))
    [key] = await issue(api, good_partner.token)
    clock.advance_to(datetime(2026, 7, 20, 9, 0, tzinfo=UTC))
    await mutate(api, good_partner.token, REVOKE, key=key)
    assert days_by_key(await estimate(api, good_partner.token)) == {key: 1}


async def test_current_month_estimate_counts_active_licenses_to_the_month_end(
    api: Api, good_partner: PartnerAccess, clock: SettableClock
) -> None:
    clock.advance_to(datetime(2026, 7, 20, 8, 0, tzinfo=UTC))
    [key] = await issue(api, good_partner.token)
    await assign(api, good_partner.token, key, fresh_site())
    result = await estimate(api, good_partner.token, month=None)
    assert result["month"] == "2026-07"
    assert days_by_key(result) == {key: 12}
    assert result["licenseCounts"]["assigned"] == 1
    assert result["costs"]["assigned"]["amount"] == cents(12)


async def test_transfer_day_is_billed_to_the_receiver_only(
    api: Api, staff_token: str, database: Database, clock: SettableClock
) -> None:
    sender = await enrol_in_good_standing(api, staff_token, database, clock, "Sender")
    receiver = await enrol_in_good_standing(api, staff_token, database, clock, "Receiver")
    [key] = await issue(api, sender.token)
    clock.advance_to(datetime(2026, 7, 5, 12, 0, tzinfo=UTC))
    code = (await mutate(api, sender.token, START_TRANSFER, key=key))["code"]
    clock.advance_to(datetime(2026, 7, 10, 12, 0, tzinfo=UTC))
    assert (await mutate(api, receiver.token, ACCEPT_TRANSFER, code=code))["errors"] == []
    sender_days = days_by_key(await estimate(api, sender.token))
    receiver_days = days_by_key(await estimate(api, receiver.token))
    assert (sender_days, receiver_days) == ({key: 9}, {key: 22})
    assert sender_days[key] + receiver_days[key] == 31


TOTAL_ONLY = 'query { billingEstimate(month: "2026-07") { licenseDays costs { total { amount } } } }'
PARTS_IN_FRAGMENTS = """
query { billingEstimate(month: "2026-07") { ...Parts } }
fragment Parts on BillingEstimate {
  licenseCounts { assigned unassigned total }
  products { ... on BillingProductLine { counts { total } } }
  costs { ... on Costs { assigned { amount } unassigned { amount } } }
}"""


async def test_a_key_transferred_away_and_back_in_july_is_one_license_whichever_parts_are_asked(
    api: Api, staff_token: str, database: Database, clock: SettableClock
) -> None:
    agency = await enrol_in_good_standing(api, staff_token, database, clock, "Agency")
    other = await enrol_in_good_standing(api, staff_token, database, clock, "Other")
    [away, kept] = await issue(api, agency.token, quantity=2)
    await assign(api, agency.token, kept, fresh_site())
    for when, sender, receiver in ((5, agency, other), (12, other, agency)):
        clock.advance_to(datetime(2026, 7, when, 12, 0, tzinfo=UTC))
        code = (await mutate(api, sender.token, START_TRANSFER, key=away))["code"]
        assert (await mutate(api, receiver.token, ACCEPT_TRANSFER, code=code))["errors"] == []
    whole = await estimate(api, agency.token)
    total_only = (await api.data(TOTAL_ONLY, token=agency.token))["billingEstimate"]
    parts = (await api.data(PARTS_IN_FRAGMENTS, token=agency.token))["billingEstimate"]
    # Two holdings of `away` (to July 4, from July 12) are one license; `kept` is on a site all month.
    assert whole["licenseCounts"] == parts["licenseCounts"] == {"assigned": 1, "unassigned": 1, "total": 2}
    assert [line["counts"] for line in parts["products"]] == [line["counts"] for line in whole["products"]]
    assert total_only["licenseDays"] == whole["licenseDays"] == 31 + 4 + 20
    assert total_only["costs"]["total"]["amount"] == whole["costs"]["total"]["amount"] == cents(55)
    assert parts["costs"]["assigned"] == whole["costs"]["assigned"] == {"amount": cents(31)}
    assert parts["costs"]["unassigned"] == whole["costs"]["unassigned"]


async def test_billing_days_follow_the_partners_zone(
    api: Api, staff_token: str, database: Database, clock: SettableClock
) -> None:
    tokyo = await enrol_in_good_standing(api, staff_token, database, clock, "Tokyo Agency", zone="Asia/Tokyo")
    clock.advance_to(datetime(2026, 7, 31, 16, 0, tzinfo=UTC))  # already August 1, 01:00 in Tokyo
    [key] = await issue(api, tokyo.token)
    assert days_by_key(await estimate(api, tokyo.token, "2026-07")) == {}
    august = await estimate(api, tokyo.token, "2026-08")
    assert (august["zone"], days_by_key(august)) == ("Asia/Tokyo", {key: 31})


async def test_closing_july_finalizes_an_invoice_whose_lines_add_up(
    api: Api, good_partner: PartnerAccess, staff_token: str, clock: SettableClock
) -> None:
    keys = await issue(api, good_partner.token, quantity=3)
    await assign(api, good_partner.token, keys[0], fresh_site())
    clock.advance_to(datetime(2026, 7, 10, 16, 0, tzinfo=UTC))
    await mutate(api, good_partner.token, REVOKE, key=keys[1])
    closed = await close_july(api, staff_token, clock)
    assert closed["errors"] == [] and closed["closed"] >= 1

    [invoice] = await our_invoices(api, good_partner.token)
    # The card on file is charged at the close, so the invoice is paid as it is finalized.
    assert (invoice["month"], invoice["status"], invoice["zone"]) == ("2026-07", "PAID", "UTC")
    assert invoice["paidAt"] == "2026-08-01T00:30:00+00:00" and closed["paid"] >= 1
    assert invoice["licenseDays"] == 31 + 10 + 31
    assert invoice["total"]["amount"] == cents(72)
    assert sum(line["amount"]["amount"] for line in invoice["lines"]) == invoice["total"]["amount"]
    day_lines = invoice["dayLines"]["nodes"]
    assert sorted(line["days"] for line in day_lines) == [10, 31, 31]
    assert sum(line["amount"]["amount"] for line in day_lines) == invoice["total"]["amount"]


async def test_closing_a_month_twice_bills_it_once(
    api: Api, good_partner: PartnerAccess, staff_token: str, clock: SettableClock
) -> None:
    await issue(api, good_partner.token)
    first = await close_july(api, staff_token, clock)
    second = await close_month(api, "2026-07", staff_token)
    assert first["closed"] >= 1
    assert second["closed"] == 0
    assert second["alreadyClosed"] >= 1
    assert len(await our_invoices(api, good_partner.token)) == 1


async def test_a_rerun_after_a_crash_closes_only_the_rest(
    api: Api, staff_token: str, database: Database, clock: SettableClock
) -> None:
    first = await enrol_in_good_standing(api, staff_token, database, clock, "Closed Before The Crash")
    second = await enrol_in_good_standing(api, staff_token, database, clock, "Left By The Crash")
    await issue(api, first.token)
    await issue(api, second.token)
    clock.advance_to(datetime(2026, 8, 1, 0, 30, tzinfo=UTC))
    # The crashed run had committed the first partner's invoice only.
    closed = await finalize_partner_month(database, first.id, BillingMonth(2026, 7), now=clock.now())
    assert closed.outcome is CloseOutcome.CLOSED
    rerun = await close_month(api, "2026-07", staff_token)
    assert rerun["alreadyClosed"] >= 1 and rerun["closed"] >= 1
    assert len(await our_invoices(api, first.token)) == 1
    assert len(await our_invoices(api, second.token)) == 1


async def test_a_month_with_nothing_to_bill_is_paid_at_once(
    api: Api, good_partner: PartnerAccess, staff_token: str, clock: SettableClock
) -> None:
    await close_july(api, staff_token, clock)
    [invoice] = await our_invoices(api, good_partner.token)
    assert (invoice["status"], invoice["total"]["amount"], invoice["paidAt"]) == (
        "PAID",
        0,
        "2026-08-01T00:30:00+00:00",
    )


async def test_a_closed_month_estimate_answers_what_was_billed(
    api: Api, good_partner: PartnerAccess, staff_token: str, clock: SettableClock
) -> None:
    [key] = await issue(api, good_partner.token)
    await close_july(api, staff_token, clock)
    await assign(api, good_partner.token, key, fresh_site())  # after the close: not in July's invoice
    result = await estimate(api, good_partner.token)
    assert result["invoiced"] is True
    assert result["licenseCounts"] == {"assigned": 0, "unassigned": 1, "total": 1}


async def test_a_month_that_has_not_ended_cannot_be_closed(api: Api, staff_token: str) -> None:
    refused = await close_month(api, "2026-07", staff_token)
    assert refused["errors"][0]["code"] == "MONTH_NOT_OVER"
    assert refused["errors"][0]["field"] == "month"


async def test_a_malformed_month_is_refused(api: Api, staff_token: str, good_partner: PartnerAccess) -> None:
    refused = await close_month(api, "July 2026", staff_token)
    assert refused["errors"][0]["code"] == "INVALID_INPUT"
    body = await api.call(ESTIMATE, {"month": "2026-13"}, good_partner.token)
    assert body["errors"][0]["extensions"]["code"] == "INVALID_INPUT"


async def test_partners_cannot_close_months(api: Api, good_partner: PartnerAccess) -> None:
    refused = await close_month(api, "2026-06", good_partner.token)
    assert refused["errors"][0]["code"] == "FORBIDDEN"


async def test_the_estimate_needs_a_partner_token(api: Api, staff_token: str) -> None:
    body = await api.call(ESTIMATE, {"month": "2026-07"}, staff_token)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_another_partners_invoice_is_not_found(
    api: Api, good_partner: PartnerAccess, staff_token: str, database: Database, clock: SettableClock
) -> None:
    other = await enrol_in_good_standing(api, staff_token, database, clock, "Other Agency")
    await issue(api, good_partner.token)
    await close_july(api, staff_token, clock)
    [invoice] = await our_invoices(api, good_partner.token)
    assert (await api.data(INVOICE, {"id": invoice["id"]}, good_partner.token))["invoice"]["id"] == invoice[
        "id"
    ]
    theirs = await api.call(INVOICE, {"id": invoice["id"]}, other.token)
    unknown = await api.call(INVOICE, {"id": "inv_nope"}, other.token)
    assert theirs["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert theirs["errors"][0]["message"].replace(invoice["id"], "X") == unknown["errors"][0][
        "message"
    ].replace("inv_nope", "X")
    csv = await api.client.get(invoice["dayLinesCsvPath"], headers={"Authorization": f"Bearer {other.token}"})
    assert csv.status_code == 404


async def test_invoice_day_lines_export_as_csv_adding_up_to_the_total(
    api: Api, good_partner: PartnerAccess, staff_token: str, clock: SettableClock
) -> None:
    await issue(api, good_partner.token, quantity=3)
    await close_july(api, staff_token, clock)
    [invoice] = await our_invoices(api, good_partner.token)
    response = await api.client.get(
        invoice["dayLinesCsvPath"], headers={"Authorization": f"Bearer {good_partner.token}"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    header, *rows = [line.split(",") for line in response.text.strip().split("\n")]
    assert header[:7] == ["invoice", "month", "license_key", "product", "site", "days", "amount_minor"]
    assert len(rows) == 3
    assert sum(int(row[6]) for row in rows) == invoice["total"]["amount"]
    unauthenticated = await api.client.get(invoice["dayLinesCsvPath"])
    assert unauthenticated.status_code == 401
