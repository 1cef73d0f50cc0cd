"""Why a partner is blocked and why a charge failed, over GraphQL against localstripe."""

from __future__ import annotations

from typing import Any

from app.devstripe import LocalStripe
from domain.clock import SettableClock
from persistence.database import Database
from persistence.unit_of_work import UnitOfWork
from tests.integration.billing_run_operations import close_month
from tests.integration.conftest import Api, add_card
from tests.integration.license_operations import ISSUE
from tests.integration.payment_operations import (
    PAY,
    VISA,
    card_typed_in,
    first_of,
    invoices_of,
    past_due_july,
    payload,
    standing,
)

EXPLAINED = """
query($id: ID!) {
  invoice(id: $id) {
    id status
    paymentAttempts { number at cardBrand cardLast4 status failureCode declineCode message }
  }
  viewer { standing { state reasonInvoiceId reasonInvoice { id month status } } }
}"""


async def issue_refusal(api: Api, token: str) -> list[dict[str, Any]]:
    body = await api.data(
        ISSUE, {"input": {"items": [{"productSlug": "jetpack-backup", "quantity": 1}]}}, token
    )
    errors: list[dict[str, Any]] = body["issueLicenses"]["errors"]
    return errors


async def test_paying_the_older_of_two_past_due_invoices_makes_the_newer_one_the_reason(
    api: Api, staff_token: str, database: Database, localstripe: LocalStripe, clock: SettableClock
) -> None:
    access, july = await past_due_july(api, staff_token, localstripe, clock)
    clock.advance_to(first_of(9))
    assert (await close_month(api, "2026-08", staff_token))["pastDue"] >= 1
    [august] = [i for i in await invoices_of(api, access.token) if i["month"] == "2026-08"]
    assert (august["status"], (await standing(api, access.token))["reasonInvoiceId"]) == (
        "PAST_DUE",
        july["id"],
    )
    visa = await add_card(api, access.token, await card_typed_in(localstripe, VISA))

    paid = await payload(api, access.token, PAY, invoiceId=july["id"], paymentMethodId=visa["id"])

    assert paid["errors"] == [] and paid["invoice"]["status"] == "PAID"
    owing = await standing(api, access.token)
    assert (owing["state"], owing["reasonInvoiceId"]) == ("PAST_DUE", august["id"])
    assert await issue_refusal(api, access.token) == [
        {
            "code": "ACCOUNT_PAST_DUE",
            "message": f"Issuing licenses is paused: Invoice {august['id']} is past due. Pay it to continue.",
            "field": None,
        }
    ]
    async with UnitOfWork(database, read_only=True) as uow:
        moves = [e for e in await uow.events.after(access.id, 0) if e.stream == "standing"]
    # August going past due and the card added while past due changed neither state nor reason: no event.
    assert [(e.action, e.from_state, e.to_state, e.payload.get("reason_invoice_id")) for e in moves] == [
        ("payment_method_added", "no_payment_method", "good", None),
        ("invoice_past_due", "good", "past_due", july["id"]),
        ("past_due_settled", "past_due", "past_due", august["id"]),
    ]


async def test_a_partner_sees_which_card_was_declined_why_and_which_invoice_blocks_it(
    api: Api, staff_token: str, localstripe: LocalStripe, clock: SettableClock
) -> None:
    access, july = await past_due_july(api, staff_token, localstripe, clock)

    seen = await api.data(EXPLAINED, {"id": july["id"]}, access.token)

    [attempt] = seen["invoice"]["paymentAttempts"]
    assert {k: attempt[k] for k in ("number", "cardBrand", "cardLast4", "status", "failureCode")} == {
        "number": 1,
        "cardBrand": "visa",
        "cardLast4": "0341",
        "status": "FAILED",
        "failureCode": "card_declined",
    }
    assert attempt["message"] and attempt["at"].startswith("2026-08-01")
    assert seen["viewer"]["standing"] == {
        "state": "PAST_DUE",
        "reasonInvoiceId": july["id"],
        "reasonInvoice": {"id": july["id"], "month": "2026-07", "status": "PAST_DUE"},
    }


async def test_each_charge_attempt_is_an_invoice_event_in_the_invoices_history(
    api: Api, staff_token: str, database: Database, localstripe: LocalStripe, clock: SettableClock
) -> None:
    access, july = await past_due_july(api, staff_token, localstripe, clock)

    declined = await payload(api, access.token, PAY, invoiceId=july["id"])

    assert declined["errors"][0]["code"] == "PAYMENT_FAILED"
    async with UnitOfWork(database, read_only=True) as uow:
        history = await uow.events.for_subjects(access.id, "invoice", [july["id"]])
    assert [(e.action, e.from_state, e.to_state) for e in history] == [
        ("finalize", "draft", "open"),
        ("payment_attempt", "open", "open"),
        ("charge_failed", "open", "past_due"),
        ("payment_attempt", "past_due", "past_due"),
    ]
    attempts = [e.payload for e in history if e.action == "payment_attempt"]
    assert [(p["attempt"], p["status"], p["failure_code"]) for p in attempts] == [
        (1, "failed", "card_declined"),
        (2, "failed", "card_declined"),
    ]
