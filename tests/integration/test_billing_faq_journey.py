"""The FAQ, played end to end over GraphQL against localstripe: cards, issuing, a month, charges, dunning."""

from __future__ import annotations

from datetime import UTC, datetime

from app.devstripe import LocalStripe
from domain.payments import AttemptStatus
from persistence.database import Database
from persistence.unit_of_work import UnitOfWork
from tests.integration.billing_run_operations import close_month
from tests.integration.conftest import Api, add_card, enrol
from tests.integration.license_operations import ASSIGN, ISSUE, REVOKE, assign, fresh_site, issue, mutate
from tests.integration.payment_operations import (
    DECLINES_CHARGES,
    PAY,
    REMOVE,
    SETUP,
    VISA,
    card_typed_in,
    cards_on_file,
    intents_for_invoice,
    invoices_of,
    payload,
    standing,
)

ADVANCE = "mutation($to: DateTime!) { advanceSandboxClock(input: {to: $to}) { now errors { code } } }"
BACKUP_MICROS = 328767


def cents(days: int) -> int:
    return (days * BACKUP_MICROS + 5_000) // 10_000


async def sandbox_clock_to(api: Api, staff_token: str, instant: datetime) -> None:
    moved = (await api.data(ADVANCE, {"to": instant.isoformat()}, staff_token))["advanceSandboxClock"]
    assert moved["errors"] == [] and moved["now"] == instant.isoformat()


async def close(api: Api, staff_token: str, month: str) -> None:
    closed = await close_month(api, month, staff_token)
    assert closed["errors"] == [] and closed["closed"] >= 1


async def test_the_partner_billing_faq_from_first_card_to_a_settled_past_due_invoice(
    api: Api, staff_token: str, localstripe: LocalStripe
) -> None:
    agency = await enrol(api, staff_token, "FAQ Agency")

    # A new partner has no payment method, so issuing is paused.
    refused = await api.data(
        ISSUE, {"input": {"items": [{"productSlug": "jetpack-backup", "quantity": 1}]}}, agency.token
    )
    assert refused["issueLicenses"]["errors"][0]["code"] == "NO_PAYMENT_METHOD"

    # "New credit card": the portal starts a SetupIntent, the browser's Stripe.js turns the typed card into
    # a PaymentMethod, and the portal keeps it on file.
    setup = (await api.data(SETUP, token=agency.token))["createPaymentMethodSetup"]
    assert setup["errors"] == [] and setup["clientSecret"]
    card = await add_card(api, agency.token, await card_typed_in(localstripe, VISA))
    assert (await standing(api, agency.token))["state"] == "GOOD"

    # Issue two licenses on July 1, assign one, revoke the other on July 10.
    kept, revoked = await issue(api, agency.token, quantity=2)
    site = fresh_site("faq")
    assert (await assign(api, agency.token, kept, site))["errors"] == []
    await sandbox_clock_to(api, staff_token, datetime(2026, 7, 10, 15, 0, tzinfo=UTC))
    assert (await mutate(api, agency.token, REVOKE, key=revoked))["errors"] == []

    # The sandbox clock reaches the 1st; closing July charges the card: the invoice is paid.
    await sandbox_clock_to(api, staff_token, datetime(2026, 8, 1, 0, 30, tzinfo=UTC))
    await close(api, staff_token, "2026-07")
    [july] = await invoices_of(api, agency.token)
    assert (july["month"], july["status"], july["paidAt"]) == ("2026-07", "PAID", "2026-08-01T00:30:00+00:00")
    assert july["total"]["amount"] == cents(31) + cents(10)
    day_lines = {line["licenseKey"]: line["days"] for line in july["dayLines"]["nodes"]}
    assert day_lines == {kept: 31, revoked: 10}
    [charge] = await intents_for_invoice(localstripe, july["id"])
    assert (charge["status"], charge["amount"], charge["payment_method"]) == (
        "succeeded",
        july["total"]["amount"],
        card["id"],
    )

    # Removing every card pauses issuing.
    assert (await payload(api, agency.token, REMOVE, paymentMethodId=card["id"]))["errors"] == []
    assert await cards_on_file(api, agency.token) == []
    paused = await api.data(
        ISSUE, {"input": {"items": [{"productSlug": "jetpack-backup", "quantity": 1}]}}, agency.token
    )
    assert paused["issueLicenses"]["errors"][0]["code"] == "NO_PAYMENT_METHOD"

    # August closes with no card to charge: the invoice is past due, and so is the account.
    await sandbox_clock_to(api, staff_token, datetime(2026, 9, 1, 0, 30, tzinfo=UTC))
    await close(api, staff_token, "2026-08")
    august = next(i for i in await invoices_of(api, agency.token) if i["month"] == "2026-08")
    assert (august["status"], august["total"]["amount"]) == ("PAST_DUE", cents(31))
    owing = await standing(api, agency.token)
    assert (owing["state"], owing["reasonInvoiceId"]) == ("PAST_DUE", august["id"])
    moved = await mutate(api, agency.token, ASSIGN, key=kept, site=fresh_site("other"))
    assert moved["errors"][0]["code"] == "ACCOUNT_PAST_DUE"
    assert august["id"] in moved["errors"][0]["message"]

    # A new card does not settle the debt by itself; paying the invoice does.
    await add_card(api, agency.token, await card_typed_in(localstripe, VISA))
    assert (await standing(api, agency.token))["state"] == "PAST_DUE"
    paid = await payload(api, agency.token, PAY, invoiceId=august["id"])
    assert paid["errors"] == [] and paid["invoice"]["status"] == "PAID"
    assert (await standing(api, agency.token))["state"] == "GOOD"
    assert (await assign(api, agency.token, kept, fresh_site("other")))["errors"] == []


async def test_a_declined_primary_card_falls_back_to_the_second_card_and_both_attempts_are_kept(
    api: Api, staff_token: str, database: Database, localstripe: LocalStripe
) -> None:
    agency = await enrol(api, staff_token, "Fallback Agency")
    declining = await add_card(api, agency.token, await card_typed_in(localstripe, DECLINES_CHARGES))
    working = await add_card(api, agency.token, await card_typed_in(localstripe, VISA))
    assert (declining["primary"], working["primary"]) == (True, False)
    await issue(api, agency.token)

    await sandbox_clock_to(api, staff_token, datetime(2026, 8, 1, 0, 30, tzinfo=UTC))
    await close(api, staff_token, "2026-07")

    [july] = await invoices_of(api, agency.token)
    assert july["status"] == "PAID"
    async with UnitOfWork(database, read_only=True) as uow:
        attempts = await uow.payment_attempts.for_invoice(july["id"])
        cards = {m.id: m.stripe_id for m in await uow.payment_methods.active(agency.id)}
    assert [(a.number, cards[a.payment_method_id], a.status, a.failure_code) for a in attempts] == [
        (1, declining["id"], AttemptStatus.FAILED, "card_declined"),
        (2, working["id"], AttemptStatus.SUCCEEDED, None),
    ]
    intents = {i["payment_method"]: i["status"] for i in await intents_for_invoice(localstripe, july["id"])}
    assert intents == {declining["id"]: "requires_payment_method", working["id"]: "succeeded"}
    assert (await standing(api, agency.token))["state"] == "GOOD"
