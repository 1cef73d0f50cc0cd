"""The payment operations as the portal sends them, and what the browser's Stripe.js does."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from app.devstripe import LocalStripe
from domain.clock import SettableClock
from domain.payments import PaymentAttempt
from payments.webhooks import sign_webhook
from persistence.database import Database
from persistence.unit_of_work import UnitOfWork
from tests.integration.billing_run_operations import close_month
from tests.integration.conftest import (
    STRIPE_API_KEY,
    STRIPE_WEBHOOK_SECRET,
    Api,
    PartnerAccess,
    add_card,
    enrol,
)
from tests.integration.license_operations import issue

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


async def partner_with(api: Api, staff_token: str, localstripe: LocalStripe, *numbers: str) -> PartnerAccess:
    access = await enrol(api, staff_token, "Collection Agency")
    for number in numbers:
        await add_card(api, access.token, await card_typed_in(localstripe, number))
    return access


async def close_july(api: Api, staff_token: str, clock: SettableClock) -> dict[str, Any]:
    clock.advance_to(first_of(8))
    result: dict[str, Any] = await close_month(api, "2026-07", staff_token)
    assert result["errors"] == [], result
    return result


async def july_invoice(api: Api, token: str) -> dict[str, Any]:
    [invoice] = [i for i in await invoices_of(api, token) if i["month"] == "2026-07"]
    return invoice


async def attempts_of(database: Database, invoice_id: str) -> list[PaymentAttempt]:
    async with UnitOfWork(database, read_only=True) as uow:
        return await uow.payment_attempts.for_invoice(invoice_id)


async def past_due_july(
    api: Api, staff_token: str, localstripe: LocalStripe, clock: SettableClock, licenses: int = 1
) -> tuple[PartnerAccess, dict[str, Any]]:
    """A partner whose only card declines every charge, with licenses, after July's close."""
    access = await partner_with(api, staff_token, localstripe, DECLINES_CHARGES)
    await issue(api, access.token, quantity=licenses)
    await close_july(api, staff_token, clock)
    invoice = await july_invoice(api, access.token)
    assert invoice["status"] == "PAST_DUE"
    return access, invoice


def signed_event(
    event_type: str, subject: dict[str, Any], event_id: str, at: int | None = None
) -> tuple[bytes, str]:
    body = json.dumps(
        {
            "id": event_id,
            "object": "event",
            "type": event_type,
            "created": int(time.time()),
            "data": {"object": subject},
        }
    ).encode()
    return body, sign_webhook(body, STRIPE_WEBHOOK_SECRET, at)


async def deliver(api: Api, body: bytes, signature: str) -> httpx.Response:
    return await api.client.post(
        "/webhooks/stripe",
        content=body,
        headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
    )
