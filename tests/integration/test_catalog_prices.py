"""Prices per product and currency, dated; the catalog staff run; what a fresh install needs to sell."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from domain.billing import BillingMonth, round_half_up
from domain.clock import SettableClock
from persistence.database import Database
from resolvers.billing import CloseOutcome, finalize_partner_month
from tests.integration.conftest import (
    CREATE_PARTNER,
    CREATE_TOKEN,
    Api,
    PartnerAccess,
    add_card,
    enrol,
)
from tests.integration.license_operations import COUNTS, ISSUE, issue, mutate

ERRORS = "errors { code message field }"
PRODUCT_FIELDS = "slug name retiredAt available prices { currency dailyPriceMicros effectiveFrom }"
CREATE_PRODUCT = f"""
mutation($input: CreateProductInput!) {{
  createProduct(input: $input) {{ product {{ {PRODUCT_FIELDS} }} {ERRORS} }}
}}"""
SET_PRICE = f"""
mutation($input: SetProductPriceInput!) {{
  setProductPrice(input: $input) {{ product {{ {PRODUCT_FIELDS} }} {ERRORS} }}
}}"""
RETIRE = f"""
mutation($input: RetireProductInput!) {{
  retireProduct(input: $input) {{ product {{ {PRODUCT_FIELDS} }} {ERRORS} }}
}}"""
SET_CURRENCY = f"""
mutation($input: SetPartnerCurrencyInput!) {{
  setPartnerCurrency(input: $input) {{ partner {{ id currency }} {ERRORS} }}
}}"""
INVOICE = """
query($id: ID!) {
  invoice(id: $id) {
    number currency total { amount formatted } licenseDays
    lines { product { slug } licenseDays dailyPriceMicros amount { amount } }
    dayLines(first: 100) { totalCount nodes { licenseKey days dailyPriceMicros amount { amount } } }
  }
}"""
INVOICE_OF_MONTH = "query($month: String) { billingEstimate(month: $month) { invoiced } }"
INVOICES = "{ invoices(first: 5) { nodes { id month } } }"
COMPLETE_JPY_MICROS = 203_013_750  # jetpack-complete in app/catalog.toml: JPY 203.01375 per day


async def enrol_billed_in(
    api: Api, staff_token: str, currency: str, zone: str = "UTC", card: bool = True
) -> PartnerAccess:
    created = await api.data(
        CREATE_PARTNER,
        {"input": {"name": f"{currency.upper()} Agency", "billingZone": zone, "currency": currency}},
        staff_token,
    )
    partner_id = created["createPartner"]["partner"]["id"]
    minted = await api.data(CREATE_TOKEN, {"input": {"partnerId": partner_id}}, staff_token)
    access = PartnerAccess(partner_id, minted["createApiToken"]["token"]["secret"])
    if card:
        await add_card(api, access.token, "pm_card_visa")
    return access


async def staff_call(api: Api, staff_token: str, operation: str, **input: Any) -> dict[str, Any]:
    return await mutate(api, staff_token, operation, **input)


async def new_product(api: Api, staff_token: str, *prices: tuple[str, int, str]) -> str:
    """A product only this test sells, with (currency, daily micros, effective from) prices."""
    slug = f"test-{secrets.token_hex(4)}"
    created = await staff_call(api, staff_token, CREATE_PRODUCT, slug=slug, name="Test product")
    assert created["errors"] == [], created
    for currency, micros, effective_from in prices:
        priced = await staff_call(
            api,
            staff_token,
            SET_PRICE,
            productSlug=slug,
            currency=currency,
            dailyPriceMicros=micros,
            effectiveFrom=effective_from,
        )
        assert priced["errors"] == [], priced
    return slug


async def close_and_read(
    api: Api, database: Database, access: PartnerAccess, month: BillingMonth, now: datetime
) -> dict[str, Any]:
    """Close one partner's month (as closeBillingMonth does per partner) and read the invoice back."""
    assert (await finalize_partner_month(database, access.id, month, now=now)).outcome is CloseOutcome.CLOSED
    listed = await api.data(INVOICES, token=access.token)
    (invoice_id,) = [node["id"] for node in listed["invoices"]["nodes"] if node["month"] == str(month)]
    body = await api.data(INVOICE, {"id": invoice_id}, access.token)
    invoice: dict[str, Any] = body["invoice"]
    return invoice


# Each test bills its own year: months closed by one test must not close another's price dates.


async def test_jpy_partner_with_310_license_days_of_complete_is_billed_in_yen_at_the_yen_price(
    api: Api, staff_token: str, database: Database, clock: SettableClock
) -> None:
    clock.advance_to(datetime(2033, 1, 1, 0, 0, tzinfo=UTC))
    access = await enrol_billed_in(api, staff_token, "jpy")
    await issue(api, access.token, "jetpack-complete", 10)

    invoice = await close_and_read(
        api, database, access, BillingMonth(2033, 1), datetime(2033, 2, 1, 1, 0, tzinfo=UTC)
    )
    assert invoice["currency"] == "jpy"
    assert invoice["licenseDays"] == 310
    # JPY has no minor unit: 310 days x JPY 203.01375 = JPY 62,934.2625 -> 62934, not the USD figure.
    assert invoice["total"] == {"amount": 62934, "formatted": "62934"}
    assert [(line["dailyPriceMicros"], line["amount"]["amount"]) for line in invoice["lines"]] == [
        (COMPLETE_JPY_MICROS, 62934)
    ]
    assert sum(node["amount"]["amount"] for node in invoice["dayLines"]["nodes"]) == 62934


async def test_price_change_on_july_15_splits_the_line_and_the_day_lines_still_add_up(
    api: Api, staff_token: str, database: Database, clock: SettableClock
) -> None:
    slug = await new_product(
        api, staff_token, ("usd", 1_000_001, "2035-06-01"), ("usd", 2_000_003, "2035-07-15")
    )
    clock.advance_to(datetime(2035, 7, 1, 0, 0, tzinfo=UTC))
    access = await enrol_billed_in(api, staff_token, "usd")
    await issue(api, access.token, slug, 3)

    invoice = await close_and_read(
        api, database, access, BillingMonth(2035, 7), datetime(2035, 8, 1, 1, 0, tzinfo=UTC)
    )
    lines = [
        (line["dailyPriceMicros"], line["licenseDays"], line["amount"]["amount"]) for line in invoice["lines"]
    ]
    # July 1-14 at the old price, July 15-31 at the new one, for 3 licenses.
    assert lines == [
        (1_000_001, 42, round_half_up(42 * 1_000_001, 10_000)),
        (2_000_003, 51, round_half_up(51 * 2_000_003, 10_000)),
    ]
    assert invoice["total"]["amount"] == lines[0][2] + lines[1][2]
    nodes = invoice["dayLines"]["nodes"]
    assert (
        sorted((node["dailyPriceMicros"], node["days"]) for node in nodes)
        == [(1_000_001, 14)] * 3 + [(2_000_003, 17)] * 3
    )
    for price, _, amount in lines:
        assert sum(node["amount"]["amount"] for node in nodes if node["dailyPriceMicros"] == price) == amount

    refused = await staff_call(
        api,
        staff_token,
        SET_PRICE,
        productSlug=slug,
        currency="usd",
        dailyPriceMicros=5,
        effectiveFrom="2035-07-20",
    )
    assert [error["code"] for error in refused["errors"]] == ["MONTH_CLOSED"]


async def test_issuing_a_product_with_no_price_in_the_partners_currency_is_refused_and_writes_nothing(
    api: Api, staff_token: str, clock: SettableClock
) -> None:
    slug = await new_product(api, staff_token, ("usd", 500_000, "2036-01-01"))
    clock.advance_to(datetime(2036, 3, 1, 12, 0, tzinfo=UTC))
    access = await enrol_billed_in(api, staff_token, "eur")

    body = await api.data(ISSUE, {"input": {"items": [{"productSlug": slug, "quantity": 2}]}}, access.token)
    assert body["issueLicenses"]["errors"] == [
        {
            "code": "PRICE_NOT_AVAILABLE",
            "message": f"'{slug}' has no price in EUR on 2036-03-01.",
            "field": "items[0].productSlug",
        }
    ]
    assert (await api.data(COUNTS, token=access.token))["licenseCounts"]["all"] == 0


async def test_unknown_product_is_reported_before_the_missing_card(api: Api, staff_token: str) -> None:
    access = await enrol(api, staff_token)  # no card: issuing is blocked by standing
    body = await api.data(
        ISSUE, {"input": {"items": [{"productSlug": "no-such", "quantity": 1}]}}, access.token
    )
    assert [error["code"] for error in body["issueLicenses"]["errors"]] == ["UNKNOWN_PRODUCT"]


async def test_partner_currency_can_change_until_it_holds_a_license(
    api: Api, staff_token: str, clock: SettableClock
) -> None:
    access = await enrol_billed_in(api, staff_token, "usd")
    changed = await staff_call(api, staff_token, SET_CURRENCY, partnerId=access.id, currency="gbp")
    assert changed == {"partner": {"id": access.id, "currency": "gbp"}, "errors": []}
    await issue(api, access.token, "jetpack-backup")

    locked = await staff_call(api, staff_token, SET_CURRENCY, partnerId=access.id, currency="eur")
    assert locked["partner"] is None
    assert [error["code"] for error in locked["errors"]] == ["CURRENCY_LOCKED"]


async def test_catalog_admin_refuses_bad_prices_unknown_products_and_partner_tokens(
    api: Api, staff_token: str, partner: PartnerAccess
) -> None:
    slug = await new_product(api, staff_token)

    async def price_errors(currency: str, micros: int) -> list[str]:
        payload = await staff_call(
            api,
            staff_token,
            SET_PRICE,
            productSlug=slug,
            currency=currency,
            dailyPriceMicros=micros,
            effectiveFrom="2040-01-01",
        )
        return [error["code"] for error in payload["errors"]]

    assert await price_errors("usd", 0) == ["INVALID_INPUT"]
    assert await price_errors("usd", -5) == ["INVALID_INPUT"]
    assert await price_errors("usd", 2**31 - 1) == []  # the most the API's 32-bit Int carries
    too_large = {
        "productSlug": slug,
        "currency": "usd",
        "dailyPriceMicros": 10**13,
        "effectiveFrom": "2040-01-01",
    }
    assert (
        "cannot represent"
        in (await api.call(SET_PRICE, {"input": too_large}, staff_token))["errors"][0]["message"]
    )
    assert await price_errors("xyz", 100) == ["UNSUPPORTED_CURRENCY"]
    unknown = await staff_call(api, staff_token, RETIRE, slug="no-such-product")
    assert [error["code"] for error in unknown["errors"]] == ["UNKNOWN_PRODUCT"]
    duplicate = await staff_call(api, staff_token, CREATE_PRODUCT, slug=slug, name="Again")
    assert [error["code"] for error in duplicate["errors"]] == ["CONFLICT"]
    by_partner = await mutate(api, partner.token, CREATE_PRODUCT, slug="sneaky", name="Sneaky")
    assert [error["code"] for error in by_partner["errors"]] == ["FORBIDDEN"]
    by_partner = await mutate(api, partner.token, RETIRE, slug="jetpack-backup")
    assert [error["code"] for error in by_partner["errors"]] == ["FORBIDDEN"]


async def test_retired_product_issues_no_new_licenses_but_held_ones_keep_billing(
    api: Api, staff_token: str, clock: SettableClock
) -> None:
    slug = await new_product(api, staff_token, ("usd", 250_000, "2036-04-01"))
    clock.advance_to(datetime(2036, 5, 1, 0, 0, tzinfo=UTC))
    access = await enrol_billed_in(api, staff_token, "usd")
    await issue(api, access.token, slug)

    retired = await staff_call(api, staff_token, RETIRE, slug=slug)
    assert retired["product"]["retiredAt"] is not None
    assert retired["product"]["available"] is False
    body = await api.data(ISSUE, {"input": {"items": [{"productSlug": slug, "quantity": 1}]}}, access.token)
    assert [error["code"] for error in body["issueLicenses"]["errors"]] == ["PRODUCT_RETIRED"]
    estimate = await api.data(
        '{ billingEstimate(month: "2036-05") { products { product { slug } licenseDays } } }',
        token=access.token,
    )
    assert estimate["billingEstimate"]["products"] == [{"product": {"slug": slug}, "licenseDays": 31}]
