"""The payment operations as the portal sends them, and what the browser's Stripe.js does."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from app.devstripe import LocalStripe
from tests.integration.conftest import STRIPE_API_KEY, Api

VISA = "4242424242424242"
MASTERCARD = "5555555555554444"
DECLINES_CHARGES = "4000000000000341"  # attaches fine, every charge is declined
ERRORS = "errors { code message field }"
CARD_FIELDS = "id brand last4 expMonth expYear primary createdAt removedAt"

SETUP = f"""
mutation {{ createPaymentMethodSetup(input: {{}}) {{ setupIntentId clientSecret {ERRORS} }} }}"""
SET_PRIMARY = f"""
mutation($input: PaymentMethodInput!) {{
  setPrimaryPaymentMethod(input: $input) {{ paymentMethod {{ {CARD_FIELDS} }} {ERRORS} }}
}}"""
REMOVE = f"""
mutation($input: PaymentMethodInput!) {{
  removePaymentMethod(input: $input) {{ paymentMethod {{ {CARD_FIELDS} }} {ERRORS} }}
}}"""
PAY = f"""
mutation($input: PayInvoiceInput!) {{
  payInvoice(input: $input) {{ invoice {{ id status paidAt total {{ amount }} }} {ERRORS} }}
}}"""
CARDS = f"""{{ viewer {{ paymentMethods(first: 100) {{ totalCount nodes {{ {CARD_FIELDS} }} }} }} }}"""
STANDING = """{ viewer { standing {
  state since reasonInvoiceId allowedActions blockedActions { action code }
} } }"""
INVOICES = """
query { invoices(first: 10) { nodes { id month status paidAt total { amount }
  dayLines(first: 100) { totalCount nodes { licenseKey days amount { amount } } } } } }"""
CLOSE = f"""
mutation($month: String!) {{
  closeBillingMonth(input: {{month: $month}}) {{ month closed paid pastDue uncollected {ERRORS} }}
}}"""


async def card_typed_in(localstripe: LocalStripe, number: str = VISA) -> str:
    """What Stripe.js does with the card the partner typed: a PaymentMethod no one holds yet (its id)."""
    async with httpx.AsyncClient(base_url=localstripe.base_url, auth=(STRIPE_API_KEY, "")) as stripe_api:
        response = await stripe_api.post(
            "/v1/payment_methods",
            data={
                "type": "card",
                "card[number]": number,
                "card[exp_month]": "11",
                "card[exp_year]": "2031",
                "card[cvc]": "123",
            },
        )
    response.raise_for_status()
    return str(response.json()["id"])


async def stripe_object(localstripe: LocalStripe, path: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=localstripe.base_url, auth=(STRIPE_API_KEY, "")) as stripe_api:
        response = await stripe_api.get(path)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


async def intents_for_invoice(localstripe: LocalStripe, invoice_id: str) -> list[dict[str, Any]]:
    """Every PaymentIntent Stripe holds for one of our invoices (by the metadata the charge carries).

    Pages through the whole list: the session's localstripe holds every test's charges."""
    found: list[dict[str, Any]] = []
    path = "/v1/payment_intents?limit=100"
    while True:
        page = await stripe_object(localstripe, path)
        found += [i for i in page["data"] if i["metadata"].get("invoice_id") == invoice_id]
        if not page["has_more"] or not page["data"]:
            return found
        path = f"/v1/payment_intents?limit=100&starting_after={page['data'][-1]['id']}"


async def payload(api: Api, token: str, operation: str, **input: Any) -> dict[str, Any]:
    body = await api.data(operation, {"input": input}, token)
    result: dict[str, Any] = next(iter(body.values()))
    return result


async def cards_on_file(api: Api, token: str) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = (await api.data(CARDS, token=token))["viewer"]["paymentMethods"]["nodes"]
    return nodes


async def standing(api: Api, token: str) -> dict[str, Any]:
    result: dict[str, Any] = (await api.data(STANDING, token=token))["viewer"]["standing"]
    return result


async def invoices_of(api: Api, token: str) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = (await api.data(INVOICES, token=token))["invoices"]["nodes"]
    return nodes


def first_of(month: int, year: int = 2026) -> datetime:
    return datetime(year, month, 1, 0, 30, tzinfo=UTC)
