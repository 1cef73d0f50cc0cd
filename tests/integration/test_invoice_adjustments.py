"""Staff void, write off and refund invoices over GraphQL, against localstripe: standing, dunning, Stripe's
refunds and the invoice's history follow."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from app.devstripe import LocalStripe
from domain.clock import SettableClock
from domain.payments import CollectionPolicy
from payments.stripe_gateway import StripeGateway
from persistence.database import Database
from resolvers.dunning import run_dunning
from tests.integration.billing_run_operations import close_month
from tests.integration.conftest import Api, PartnerAccess
from tests.integration.invoice_adjustment_operations import (
    REFUND,
    UNCOLLECTIBLE,
    VOID,
    invoice_events,
    invoice_history,
    staff_does,
)
from tests.integration.license_operations import issue
from tests.integration.payment_operations import (
    DECLINES_CHARGES,
    attempts_of,
    close_july,
    first_of,
    invoices_of,
    july_invoice,
    partner_with,
    past_due_july,
    standing,
    stripe_object,
)

PARTNER_VIEW = "query($id: ID!) { invoice(id: $id) { refundedAmount { amount } refunds { reason } } }"


async def stripe_refunds(localstripe: LocalStripe, database: Database, invoice_id: str) -> list[int]:
    """The amounts Stripe refunded of the PaymentIntent that paid the invoice, smallest first."""
    [attempt] = [a for a in await attempts_of(database, invoice_id) if a.status.value == "succeeded"]
    listed = await stripe_object(localstripe, f"/v1/refunds?payment_intent={attempt.payment_intent_id}")
    return sorted(r["amount"] for r in listed["data"])


async def paid_july(
    api: Api, staff_token: str, partner: PartnerAccess, clock: SettableClock
) -> dict[str, Any]:
    await issue(api, partner.token, quantity=3)
    await close_july(api, staff_token, clock)
    invoice = await july_invoice(api, partner.token)
    assert invoice["status"] == "PAID" and invoice["total"]["amount"] > 0
    return invoice


async def paid_and_past_due_july(
    api: Api, staff_token: str, good_partner: PartnerAccess, localstripe: LocalStripe, clock: SettableClock
) -> tuple[dict[str, Any], dict[str, Any]]:
    """July closed for a partner whose card pays and for one whose card declines: their two invoices."""
    declining = await partner_with(api, staff_token, localstripe, DECLINES_CHARGES)
    await issue(api, declining.token)
    paid = await paid_july(api, staff_token, good_partner, clock)
    past_due = await july_invoice(api, declining.token)
    assert past_due["status"] == "PAST_DUE"
    return paid, past_due


async def test_voiding_the_only_past_due_invoice_restores_good_standing_and_stops_dunning(
    api: Api,
    staff_token: str,
    database: Database,
    gateway: StripeGateway,
    localstripe: LocalStripe,
    clock: SettableClock,
) -> None:
    access, invoice = await past_due_july(api, staff_token, localstripe, clock)
    assert (await standing(api, access.token))["reasonInvoiceId"] == invoice["id"]

    voided = await staff_does(
        api, staff_token, VOID, id=invoice["id"], reason="  Billed twice by mistake ", idempotencyKey="v-1"
    )

    assert voided["errors"] == []
    assert (voided["invoice"]["status"], voided["invoice"]["statusReason"]) == (
        "VOID",
        "Billed twice by mistake",
    )
    after = await standing(api, access.token)
    assert (after["state"], after["reasonInvoiceId"]) == ("GOOD", None)
    assert (await invoice_history(database, access.id, invoice["id"]))[-1] == ("void", "past_due", "void")
    assert await invoice_events(database, access.id, invoice["id"], "void") == [
        {"amount": invoice["total"]["amount"], "currency": "usd", "reason": "Billed twice by mistake"}
    ]
    charged = len(await attempts_of(database, invoice["id"]))
    for day in (3, 7, 14, 29):  # every dunning day, and past the revocation day
        clock.advance_to(first_of(8) + timedelta(days=day, hours=1))
        await run_dunning(database, gateway, now=clock.now(), policy=CollectionPolicy())
    assert len(await attempts_of(database, invoice["id"])) == charged
    assert (await standing(api, access.token))["state"] == "GOOD"
    replay = await staff_does(
        api, staff_token, VOID, id=invoice["id"], reason="Billed twice by mistake", idempotencyKey="v-1"
    )
    assert replay["errors"] == [] and replay["invoice"]["status"] == "VOID"


async def test_writing_off_the_older_of_two_past_due_invoices_moves_the_standing_reason_to_the_newer(
    api: Api, staff_token: str, database: Database, localstripe: LocalStripe, clock: SettableClock
) -> None:
    access, july = await past_due_july(api, staff_token, localstripe, clock)
    clock.advance_to(first_of(9))
    closed = await close_month(api, "2026-08", staff_token)
    assert closed["errors"] == []
    [august] = [i for i in await invoices_of(api, access.token) if i["month"] == "2026-08"]

    written_off = await staff_does(api, staff_token, UNCOLLECTIBLE, id=july["id"], reason="Agency closed")

    assert written_off["invoice"]["status"] == "UNCOLLECTIBLE"
    assert written_off["invoice"]["statusReason"] == "Agency closed"
    after = await standing(api, access.token)
    assert (after["state"], after["reasonInvoiceId"]) == ("PAST_DUE", august["id"])
    assert (await invoice_history(database, access.id, july["id"]))[-1] == (
        "mark_uncollectible",
        "past_due",
        "uncollectible",
    )


async def test_a_paid_invoice_cannot_be_voided_nor_a_void_one_written_off(
    api: Api, staff_token: str, good_partner: PartnerAccess, localstripe: LocalStripe, clock: SettableClock
) -> None:
    paid, past_due = await paid_and_past_due_july(api, staff_token, good_partner, localstripe, clock)

    refused = await staff_does(api, staff_token, VOID, id=paid["id"], reason="Customer asked")

    assert refused["invoice"] is None
    assert refused["errors"] == [
        {
            "code": "INVALID_TRANSITION",
            "message": "The invoice is paid; it cannot take 'void'.",
            "field": "status",
        }
    ]
    await staff_does(api, staff_token, VOID, id=past_due["id"], reason="Goodwill")
    again = await staff_does(api, staff_token, UNCOLLECTIBLE, id=past_due["id"], reason="Goodwill")
    assert again["errors"][0]["code"] == "INVALID_TRANSITION"
    assert "The invoice is void" in again["errors"][0]["message"]


async def test_staff_invoice_operations_refuse_partner_tokens_unknown_invoices_and_bad_reasons(
    api: Api, staff_token: str, good_partner: PartnerAccess, clock: SettableClock
) -> None:
    paid = await paid_july(api, staff_token, good_partner, clock)

    for operation in (VOID, UNCOLLECTIBLE, REFUND):
        own = await staff_does(api, good_partner.token, operation, id=paid["id"], reason="Mine")
        assert [e["code"] for e in own["errors"]] == ["FORBIDDEN"]
        unknown = await staff_does(api, staff_token, operation, id="inv_nope", reason="Gone")
        assert [(e["code"], e["field"]) for e in unknown["errors"]] == [("NOT_FOUND", "id")]
        for reason in ("   ", "x" * 501):
            bad = await staff_does(api, staff_token, operation, id=paid["id"], reason=reason)
            assert [(e["code"], e["field"]) for e in bad["errors"]] == [("INVALID_INPUT", "reason")]
    assert (await july_invoice(api, good_partner.token))["status"] == "PAID"


async def test_a_partial_refund_then_the_rest_go_through_stripe_and_the_invoice_shows_each(
    api: Api,
    staff_token: str,
    good_partner: PartnerAccess,
    database: Database,
    localstripe: LocalStripe,
    clock: SettableClock,
) -> None:
    paid = await paid_july(api, staff_token, good_partner, clock)
    total = paid["total"]["amount"]

    partial = {"id": paid["id"], "amountMinor": 100, "reason": "Site down 3 days", "idempotencyKey": "r-1"}
    part = await staff_does(api, staff_token, REFUND, **partial)
    replayed = await staff_does(api, staff_token, REFUND, **partial)
    rest = await staff_does(api, staff_token, REFUND, id=paid["id"], reason="Left the program")

    assert part["errors"] == replayed["errors"] == rest["errors"] == []
    assert part["invoice"]["refundedAmount"] == {"amount": 100, "currency": "usd"}
    shown = rest["invoice"]
    assert (shown["status"], shown["refundedAmount"]["amount"]) == ("PAID", total)
    assert [(r["amount"]["amount"], r["reason"], r["status"]) for r in shown["refunds"]] == [
        (100, "Site down 3 days", "SUCCEEDED"),
        (total - 100, "Left the program", "SUCCEEDED"),
    ]
    assert all(r["stripeRefundId"].startswith("re_") for r in shown["refunds"])
    assert await stripe_refunds(localstripe, database, paid["id"]) == sorted([100, total - 100])
    events = await invoice_events(database, good_partner.id, paid["id"], "refunded")
    assert [(e["refund_amount"], e["reason"]) for e in events] == [
        (100, "Site down 3 days"),
        (total - 100, "Left the program"),
    ]
    # The partner sees the refunds on its own invoice.
    own = (await api.data(PARTNER_VIEW, {"id": paid["id"]}, good_partner.token))["invoice"]
    assert own["refundedAmount"]["amount"] == total
    assert [r["reason"] for r in own["refunds"]] == ["Site down 3 days", "Left the program"]


async def test_refunding_more_than_is_left_or_an_unpaid_invoice_is_refused_and_reaches_no_stripe(
    api: Api,
    staff_token: str,
    good_partner: PartnerAccess,
    database: Database,
    localstripe: LocalStripe,
    clock: SettableClock,
) -> None:
    paid, past_due = await paid_and_past_due_july(api, staff_token, good_partner, localstripe, clock)
    total = paid["total"]["amount"]
    await staff_does(api, staff_token, REFUND, id=paid["id"], amountMinor=total - 1, reason="Most of it")

    too_much = await staff_does(api, staff_token, REFUND, id=paid["id"], amountMinor=2, reason="One more")
    negative = await staff_does(api, staff_token, REFUND, id=paid["id"], amountMinor=0, reason="Nothing")

    assert [(e["code"], e["field"]) for e in too_much["errors"]] == [
        ("REFUND_EXCEEDS_PAYMENT", "amountMinor")
    ]
    assert "Only 1 (usd" in too_much["errors"][0]["message"]
    assert [(e["code"], e["field"]) for e in negative["errors"]] == [("INVALID_INPUT", "amountMinor")]
    assert await stripe_refunds(localstripe, database, paid["id"]) == [total - 1]
    unpaid = await staff_does(api, staff_token, REFUND, id=past_due["id"], reason="Not paid")
    assert unpaid["errors"][0]["code"] == "INVALID_TRANSITION"
    assert "past_due" in unpaid["errors"][0]["message"]
