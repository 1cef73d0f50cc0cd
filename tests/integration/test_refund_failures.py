"""Refunds off the happy path, over GraphQL with the in-memory Stripe (localstripe neither refuses refunds
of paid charges nor loses answers): a refusal refunds nothing, a lost answer never refunds twice."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from domain.clock import SettableClock
from domain.payments import DEFAULT_IN_FLIGHT_MINUTES
from persistence.database import Database
from tests.integration.conftest import Api, PartnerAccess
from tests.integration.invoice_adjustment_operations import REFUND, invoice_events, staff_does
from tests.integration.license_operations import issue
from tests.integration.payment_operations import attempts_of, close_july, july_invoice
from tests.memory_gateway import InMemoryGateway, Outage


@pytest.fixture
def gateway(memory_gateway: InMemoryGateway) -> InMemoryGateway:
    memory_gateway.outage = None
    memory_gateway.refuse_refunds = None
    return memory_gateway


async def paid_july(
    api: Api, staff_token: str, partner: PartnerAccess, database: Database, clock: SettableClock
) -> tuple[dict[str, Any], str]:
    """July's invoice, paid at the close, and the PaymentIntent that paid it."""
    await issue(api, partner.token, quantity=2)
    await close_july(api, staff_token, clock)
    invoice = await july_invoice(api, partner.token)
    assert invoice["status"] == "PAID"
    [paid_by] = [a.payment_intent_id for a in await attempts_of(database, invoice["id"])]
    assert paid_by is not None
    return invoice, paid_by


async def test_a_refund_stripe_refuses_is_a_typed_error_with_its_reason_and_refunds_nothing(
    api: Api,
    staff_token: str,
    good_partner: PartnerAccess,
    database: Database,
    gateway: InMemoryGateway,
    clock: SettableClock,
) -> None:
    invoice, paid_by = await paid_july(api, staff_token, good_partner, database, clock)
    gateway.refuse_refunds = ("charge_disputed", "This charge has been disputed.")

    refused = await staff_does(api, staff_token, REFUND, id=invoice["id"], reason="Customer asked")

    assert refused["invoice"] is None
    [error] = refused["errors"]
    assert (error["code"], error["field"]) == ("REFUND_REFUSED", "amountMinor")
    assert "charge_disputed" in error["message"] and "This charge has been disputed." in error["message"]
    assert gateway.refunded(paid_by) == 0
    failed = await invoice_events(database, good_partner.id, invoice["id"], "refund_failed")
    assert [e["failure"] for e in failed] == ["This charge has been disputed."]
    # Refused refunds hold nothing back: once Stripe accepts, the whole amount can be refunded.
    gateway.refuse_refunds = None
    done = await staff_does(api, staff_token, REFUND, id=invoice["id"], reason="Customer asked")
    assert done["invoice"]["refundedAmount"]["amount"] == invoice["total"]["amount"]
    assert [r["status"] for r in done["invoice"]["refunds"]] == ["FAILED", "SUCCEEDED"]
    assert gateway.refunded(paid_by) == invoice["total"]["amount"]


async def test_a_refund_whose_answer_was_lost_is_found_at_stripe_after_its_key_expired_and_made_once(
    api: Api,
    staff_token: str,
    good_partner: PartnerAccess,
    database: Database,
    gateway: InMemoryGateway,
    clock: SettableClock,
) -> None:
    invoice, paid_by = await paid_july(api, staff_token, good_partner, database, clock)
    request = {"id": invoice["id"], "amountMinor": 50, "reason": "Outage credit", "idempotencyKey": "lost-1"}
    gateway.outage = Outage.ANSWER_LOST

    lost = await staff_does(api, staff_token, REFUND, **request)

    assert [e["code"] for e in lost["errors"]] == ["PAYMENT_GATEWAY_UNAVAILABLE"]
    assert gateway.refunded(paid_by) == 50  # Stripe made it; we did not hear
    gateway.outage = None
    too_soon = await staff_does(api, staff_token, REFUND, **request)
    assert [e["code"] for e in too_soon["errors"]] == ["CONFLICT"]

    clock.advance_to(clock.now() + timedelta(minutes=DEFAULT_IN_FLIGHT_MINUTES, hours=24))
    gateway.forget_idempotency_keys()  # Stripe forgets keys after 24 hours
    settled = await staff_does(api, staff_token, REFUND, **request)

    assert settled["errors"] == []
    assert [(r["amount"]["amount"], r["status"]) for r in settled["invoice"]["refunds"]] == [
        (50, "SUCCEEDED")
    ]
    assert settled["invoice"]["refundedAmount"]["amount"] == 50
    assert gateway.refunded(paid_by) == 50
    assert len(await invoice_events(database, good_partner.id, invoice["id"], "refunded")) == 1
    replay = await staff_does(api, staff_token, REFUND, **request)
    assert replay["errors"] == [] and gateway.refunded(paid_by) == 50


async def test_a_refund_lost_by_one_request_is_settled_before_another_request_refunds_the_rest(
    api: Api,
    staff_token: str,
    good_partner: PartnerAccess,
    database: Database,
    gateway: InMemoryGateway,
    clock: SettableClock,
) -> None:
    invoice, paid_by = await paid_july(api, staff_token, good_partner, database, clock)
    total = invoice["total"]["amount"]
    gateway.outage = Outage.ANSWER_LOST
    await staff_does(api, staff_token, REFUND, id=invoice["id"], amountMinor=total - 10, reason="Most")
    gateway.outage = None
    clock.advance_to(clock.now() + timedelta(minutes=DEFAULT_IN_FLIGHT_MINUTES))

    too_much = await staff_does(api, staff_token, REFUND, id=invoice["id"], amountMinor=11, reason="More")
    rest = await staff_does(api, staff_token, REFUND, id=invoice["id"], reason="The rest")

    assert [e["code"] for e in too_much["errors"]] == ["REFUND_EXCEEDS_PAYMENT"]
    assert [(r["amount"]["amount"], r["status"]) for r in rest["invoice"]["refunds"]] == [
        (total - 10, "SUCCEEDED"),
        (10, "SUCCEEDED"),
    ]
    assert gateway.refunded(paid_by) == total
