"""Stripe's payment webhooks against localstripe: a success is applied once, only when it matches its
invoice; the paying PaymentIntent's own success is a no-op; a second payment is refunded through Stripe."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from app.devstripe import LocalStripe
from domain.clock import SettableClock
from payments.stripe_gateway import StripeGateway
from persistence.database import Database
from persistence.events import RecordedEvent
from persistence.unit_of_work import UnitOfWork
from tests.charges import charge
from tests.integration.conftest import Api, PartnerAccess
from tests.integration.license_operations import issue
from tests.integration.payment_operations import (
    DECLINES_CHARGES,
    VISA,
    attempts_of,
    card_typed_in,
    cards_on_file,
    close_july,
    deliver,
    july_invoice,
    partner_with,
    past_due_july,
    signed_event,
    stripe_object,
)


async def paid_july(
    api: Api, staff_token: str, localstripe: LocalStripe, clock: SettableClock
) -> tuple[PartnerAccess, dict[str, Any]]:
    access = await partner_with(api, staff_token, localstripe, VISA)
    await issue(api, access.token)
    await close_july(api, staff_token, clock)
    invoice = await july_invoice(api, access.token)
    assert invoice["status"] == "PAID"
    return access, invoice


async def invoice_events(database: Database, partner_id: str, invoice_id: str) -> list[RecordedEvent]:
    async with UnitOfWork(database, read_only=True) as uow:
        return await uow.events.for_subjects(partner_id, "invoice", [invoice_id])


async def customer_of(database: Database, partner_id: str) -> str:
    async with UnitOfWork(database, read_only=True) as uow:
        customer = await uow.customers.get(partner_id)
    assert customer is not None
    return customer


async def succeeded_event(
    localstripe: LocalStripe, intent_id: str | None, event_id: str
) -> tuple[bytes, str]:
    """Stripe's success event for a PaymentIntent, carrying the intent as Stripe holds it."""
    intent = await stripe_object(localstripe, f"/v1/payment_intents/{intent_id}")
    return signed_event("payment_intent.succeeded", intent, event_id)


async def refunds_of(localstripe: LocalStripe, intent_id: str | None) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (
        await stripe_object(localstripe, f"/v1/refunds?payment_intent={intent_id}")
    )["data"]
    return found


async def test_the_success_webhook_of_the_payment_that_paid_the_invoice_changes_nothing_and_alarms_no_one(
    api: Api,
    staff_token: str,
    database: Database,
    localstripe: LocalStripe,
    clock: SettableClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    access, invoice = await paid_july(api, staff_token, localstripe, clock)
    [attempt] = await attempts_of(database, invoice["id"])
    body, signature = await succeeded_event(localstripe, attempt.payment_intent_id, f"evt_own_{attempt.id}")

    with caplog.at_level(logging.WARNING):
        delivered = await deliver(api, body, signature)

    assert (delivered.status_code, delivered.json()["outcome"]) == (200, "applied")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    actions = [e.action for e in await invoice_events(database, access.id, invoice["id"])]
    assert actions.count("record_payment") == 1
    assert not [a for a in actions if a.startswith("duplicate")]
    assert await refunds_of(localstripe, attempt.payment_intent_id) == []


async def test_a_second_payment_of_a_paid_invoice_is_refunded_through_stripe_once_and_recorded(
    api: Api,
    staff_token: str,
    database: Database,
    gateway: StripeGateway,
    localstripe: LocalStripe,
    clock: SettableClock,
) -> None:
    access, invoice = await paid_july(api, staff_token, localstripe, clock)
    [attempt] = await attempts_of(database, invoice["id"])
    [card] = await cards_on_file(api, access.token)
    # The same invoice charged again outside this service's attempts (a second system, a dashboard click).
    again = await charge(
        gateway,
        await customer_of(database, access.id),
        card["id"],
        attempt.amount,
        "usd",
        invoice["id"],
        f"x-{attempt.id}",
    )
    assert again.succeeded
    body, signature = await succeeded_event(localstripe, again.payment_intent_id, f"evt_dup_{attempt.id}")

    first = await deliver(api, body, signature)
    second = await deliver(api, body, signature)

    assert (first.json()["outcome"], second.json()["outcome"]) == ("refunded", "duplicate")
    [refund] = await refunds_of(localstripe, again.payment_intent_id)
    assert (refund["amount"], refund["status"]) == (attempt.amount, "succeeded")
    [refunded] = [
        e for e in await invoice_events(database, access.id, invoice["id"]) if e.action.startswith("dup")
    ]
    assert refunded.action == "duplicate_refunded"
    assert refunded.payload | {"refund_id": refund["id"]} == {
        "payment_intent_id": again.payment_intent_id,
        "refund_id": refund["id"],
        "amount": attempt.amount,
        "currency": "usd",
    }
    assert (await july_invoice(api, access.token))["status"] == "PAID"
    assert await refunds_of(localstripe, attempt.payment_intent_id) == []  # the real payment stands


async def test_a_duplicate_stripe_refuses_to_refund_is_recorded_for_staff_and_the_invoice_stays_paid(
    api: Api,
    staff_token: str,
    database: Database,
    gateway: StripeGateway,
    localstripe: LocalStripe,
    clock: SettableClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    access, invoice = await paid_july(api, staff_token, localstripe, clock)
    [attempt] = await attempts_of(database, invoice["id"])
    declined = await charge(
        gateway,
        await customer_of(database, access.id),
        await card_typed_in(localstripe, DECLINES_CHARGES),
        attempt.amount,
        "usd",
        invoice["id"],
        f"declined-{attempt.id}",
    )
    # A success event for an intent Stripe holds as failed: Stripe refuses to refund a failed payment.
    body, signature = await succeeded_event(
        localstripe, declined.payment_intent_id, f"evt_norefund_{attempt.id}"
    )

    with caplog.at_level(logging.ERROR):
        delivered = await deliver(api, body, signature)

    assert delivered.json()["outcome"] == "refund_failed"
    [failed] = [
        e for e in await invoice_events(database, access.id, invoice["id"]) if e.action.startswith("dup")
    ]
    assert failed.action == "duplicate_refund_failed"
    assert "refund" in failed.payload["reason"].lower()
    assert any("refund by hand" in r.getMessage() for r in caplog.records)
    assert (await july_invoice(api, access.token))["status"] == "PAID"
    async with UnitOfWork(database, read_only=True) as uow:
        assert await uow.webhook_events.outcome(f"evt_norefund_{attempt.id}") == (
            "duplicate_refund_failed",
            failed.payload["reason"],
        )


@pytest.mark.parametrize(
    ("field", "forged"),
    [("amount", 1), ("currency", "eur"), ("customer", "cus_someone_else")],
)
async def test_a_success_that_does_not_match_its_invoice_is_recorded_as_rejected_and_not_applied(
    api: Api,
    staff_token: str,
    database: Database,
    gateway: StripeGateway,
    localstripe: LocalStripe,
    clock: SettableClock,
    field: str,
    forged: Any,
) -> None:
    access, invoice = await past_due_july(api, staff_token, localstripe, clock)
    [attempt] = await attempts_of(database, invoice["id"])
    intent = await stripe_object(localstripe, f"/v1/payment_intents/{attempt.payment_intent_id}")
    intent[field] = forged
    event_id = f"evt_mismatch_{field}_{attempt.id}"
    body, signature = signed_event("payment_intent.succeeded", intent, event_id)

    delivered = await deliver(api, body, signature)

    assert (delivered.status_code, delivered.json()["outcome"]) == (200, "rejected")
    assert (await july_invoice(api, access.token))["status"] == "PAST_DUE"
    assert await attempts_of(database, invoice["id"]) == [attempt]
    async with UnitOfWork(database, read_only=True) as uow:
        outcome, detail = await uow.webhook_events.outcome(event_id) or (None, None)
    assert outcome == "rejected"
    assert detail is not None and detail.startswith(f"{field} {forged!r} does not match")
