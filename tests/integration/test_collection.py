"""Charging invoices against a real localstripe: payInvoice, outages, dunning and Stripe's webhooks."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from app.devstripe import LocalStripe, free_port
from app.http import create_app
from domain.clock import SettableClock
from domain.payments import AttemptStatus, CollectionPolicy
from payments.stripe_gateway import StripeGateway
from payments.webhooks import sign_webhook
from persistence.database import Database
from persistence.unit_of_work import UnitOfWork
from resolvers.dunning import revoke_licenses_for_nonpayment, run_dunning
from tests.charges import charge
from tests.integration.billing_run_operations import close_month
from tests.integration.conftest import (
    STRIPE_API_KEY,
    STRIPE_WEBHOOK_SECRET,
    Api,
    PartnerAccess,
    add_card,
    stripe_settings,
)
from tests.integration.invoice_adjustment_operations import VOID, staff_does
from tests.integration.license_operations import COUNTS, issue
from tests.integration.payment_operations import (
    PAY,
    VISA,
    attempts_of,
    card_typed_in,
    cards_on_file,
    close_july,
    deliver,
    first_of,
    intents_for_invoice,
    july_invoice,
    partner_with,
    past_due_july,
    payload,
    signed_event,
    standing,
    stripe_object,
)

POLICY = CollectionPolicy()


@pytest.fixture
async def stripe_down_api(
    database_url: str, clock: SettableClock, catalog: None, localstripe: LocalStripe
) -> AsyncIterator[Api]:
    """The same service and database while Stripe refuses connections (nothing listens on the port)."""
    dead = StripeGateway(
        STRIPE_API_KEY, f"http://127.0.0.1:{free_port()}", STRIPE_WEBHOOK_SECRET, max_network_retries=0
    )
    app = create_app(stripe_settings(database_url, localstripe), clock=clock, gateway=dead)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as client:
        yield Api(client)
    await app.state.services.jobs.close()
    await dead.close()
    await app.state.services.database.dispose()


async def test_paying_a_paid_invoice_is_an_invalid_transition_naming_its_status(
    api: Api, good_partner: PartnerAccess, staff_token: str, clock: SettableClock
) -> None:
    await issue(api, good_partner.token)
    await close_july(api, staff_token, clock)
    invoice = await july_invoice(api, good_partner.token)
    assert invoice["status"] == "PAID"

    refused = await payload(api, good_partner.token, PAY, invoiceId=invoice["id"])

    assert refused["invoice"] is None
    assert refused["errors"] == [
        {
            "code": "INVALID_TRANSITION",
            "message": "The invoice is paid; it cannot take 'record_payment'.",
            "field": "status",
        }
    ]


async def test_paying_a_void_invoice_is_refused_and_charges_nothing(
    api: Api,
    staff_token: str,
    database: Database,
    localstripe: LocalStripe,
    clock: SettableClock,
) -> None:
    access, invoice = await past_due_july(api, staff_token, localstripe, clock)
    voided = await staff_does(api, staff_token, VOID, id=invoice["id"], reason="Duplicate bill")
    assert voided["errors"] == []
    before = await attempts_of(database, invoice["id"])

    refused = await payload(api, access.token, PAY, invoiceId=invoice["id"])

    assert refused["errors"][0]["code"] == "INVALID_TRANSITION"
    assert "void" in refused["errors"][0]["message"]
    assert await attempts_of(database, invoice["id"]) == before


async def test_another_partners_invoice_cannot_be_paid_and_answers_like_an_unknown_one(
    api: Api, staff_token: str, localstripe: LocalStripe, clock: SettableClock
) -> None:
    owner, invoice = await past_due_july(api, staff_token, localstripe, clock)
    stranger = await partner_with(api, staff_token, localstripe, VISA)

    theirs = await payload(api, stranger.token, PAY, invoiceId=invoice["id"])
    unknown = await payload(api, stranger.token, PAY, invoiceId="inv_nope")

    assert theirs["errors"][0]["code"] == unknown["errors"][0]["code"] == "NOT_FOUND"
    assert (await july_invoice(api, owner.token))["status"] == "PAST_DUE"


async def test_paying_with_a_card_not_on_file_is_refused(
    api: Api, staff_token: str, localstripe: LocalStripe, clock: SettableClock
) -> None:
    access, invoice = await past_due_july(api, staff_token, localstripe, clock)
    refused = await payload(api, access.token, PAY, invoiceId=invoice["id"], paymentMethodId="pm_nope")
    assert refused["errors"][0]["code"] == "PAYMENT_METHOD_NOT_FOUND"


async def test_a_declined_pay_now_leaves_the_invoice_past_due_and_says_why(
    api: Api, staff_token: str, database: Database, localstripe: LocalStripe, clock: SettableClock
) -> None:
    access, invoice = await past_due_july(api, staff_token, localstripe, clock)

    declined = await payload(api, access.token, PAY, invoiceId=invoice["id"])

    assert declined["errors"][0]["code"] == "PAYMENT_FAILED"
    assert "card_declined" in declined["errors"][0]["message"]
    assert (await july_invoice(api, access.token))["status"] == "PAST_DUE"
    assert [a.status for a in await attempts_of(database, invoice["id"])] == [AttemptStatus.FAILED] * 2


async def test_a_stripe_outage_during_pay_now_leaves_the_invoice_unpaid_and_the_retry_charges_once(
    api: Api,
    stripe_down_api: Api,
    staff_token: str,
    database: Database,
    localstripe: LocalStripe,
    clock: SettableClock,
) -> None:
    access, invoice = await past_due_july(api, staff_token, localstripe, clock)
    await add_card(api, access.token, await card_typed_in(localstripe, VISA), make_primary=True)

    down = await payload(stripe_down_api, access.token, PAY, invoiceId=invoice["id"])

    assert down["errors"][0]["code"] == "PAYMENT_GATEWAY_UNAVAILABLE"
    assert (await july_invoice(api, access.token))["status"] == "PAST_DUE"
    lost = (await attempts_of(database, invoice["id"]))[-1]
    assert (lost.status, lost.failure_code) == (AttemptStatus.UNKNOWN, "gateway_unavailable")

    paid = await payload(api, access.token, PAY, invoiceId=invoice["id"])
    again = await payload(api, access.token, PAY, invoiceId=invoice["id"])

    assert paid["errors"] == [] and paid["invoice"]["status"] == "PAID"
    assert again["errors"][0]["code"] == "INVALID_TRANSITION"
    attempts = await attempts_of(database, invoice["id"])
    # The unknown attempt was re-sent with its own key: no new attempt, one charge.
    assert [(a.number, a.status) for a in attempts] == [
        (1, AttemptStatus.FAILED),
        (2, AttemptStatus.SUCCEEDED),
    ]
    assert attempts[1].idempotency_key == lost.idempotency_key == f"invoice-{invoice['id']}-attempt-2"
    intents = await intents_for_invoice(localstripe, invoice["id"])
    assert [i["status"] for i in intents].count("succeeded") == 1
    assert (await standing(api, access.token))["state"] == "GOOD"


async def test_a_stripe_outage_at_month_close_leaves_the_invoice_open_for_dunning_to_charge_once(
    api: Api,
    stripe_down_api: Api,
    staff_token: str,
    database: Database,
    gateway: StripeGateway,
    localstripe: LocalStripe,
    clock: SettableClock,
) -> None:
    access = await partner_with(api, staff_token, localstripe, VISA)
    await issue(api, access.token)
    clock.advance_to(first_of(8))

    closed = await close_month(stripe_down_api, "2026-07", staff_token)

    assert closed["uncollected"] >= 1
    invoice = await july_invoice(api, access.token)
    assert invoice["status"] == "OPEN"
    assert (await standing(api, access.token))["state"] == "GOOD"

    report = await run_dunning(database, gateway, now=clock.now(), policy=POLICY)

    assert report.collected.paid >= 1
    assert (await july_invoice(api, access.token))["status"] == "PAID"
    assert [a.status for a in await attempts_of(database, invoice["id"])] == [AttemptStatus.SUCCEEDED]
    intents = await intents_for_invoice(localstripe, invoice["id"])
    assert [i["status"] for i in intents] == ["succeeded"]


async def test_dunning_retries_on_days_3_7_and_14_then_revokes_every_active_license_after_28_days(
    api: Api,
    staff_token: str,
    database: Database,
    gateway: StripeGateway,
    localstripe: LocalStripe,
    clock: SettableClock,
) -> None:
    access, invoice = await past_due_july(api, staff_token, localstripe, clock, licenses=3)
    went_past_due = clock.now()

    async def dunning_on(days: float) -> int:
        clock.advance_to(went_past_due + timedelta(days=days))
        await run_dunning(database, gateway, now=clock.now(), policy=POLICY)
        return len(await attempts_of(database, invoice["id"]))

    calendar = [(2.9, 1), (3, 2), (3.5, 2), (6, 2), (7, 3), (14, 4), (20, 4), (27.9, 4)]
    assert [(day, await dunning_on(day)) for day, _ in calendar] == calendar
    assert (await api.data(COUNTS, token=access.token))["licenseCounts"]["revoked"] == 0

    await dunning_on(28)
    await dunning_on(29)

    counts = (await api.data(COUNTS, token=access.token))["licenseCounts"]
    assert (counts["revoked"], counts["issued"], counts["assigned"]) == (3, 0, 0)
    assert (await july_invoice(api, access.token))["status"] == "PAST_DUE"
    async with UnitOfWork(database, read_only=True) as uow:
        events = await uow.events.after(access.id, 0)
    revokes = [e for e in events if e.stream == "license" and e.action == "revoke"]
    assert len(revokes) == 3
    assert {(e.payload["reason"], e.payload["invoice_id"]) for e in revokes} == {
        ("nonpayment", invoice["id"])
    }


async def test_a_dunning_retry_falls_back_to_a_newly_added_card_and_restores_good_standing(
    api: Api,
    staff_token: str,
    database: Database,
    gateway: StripeGateway,
    localstripe: LocalStripe,
    clock: SettableClock,
) -> None:
    access, invoice = await past_due_july(api, staff_token, localstripe, clock)
    await add_card(api, access.token, await card_typed_in(localstripe, VISA))
    clock.advance_to(clock.now() + timedelta(days=3))

    report = await run_dunning(database, gateway, now=clock.now(), policy=POLICY)

    assert report.retried.paid >= 1
    assert [a.status for a in await attempts_of(database, invoice["id"])] == [
        AttemptStatus.FAILED,  # month close, the declining card
        AttemptStatus.FAILED,  # day 3: primary first, still declining
        AttemptStatus.SUCCEEDED,  # then the new card
    ]
    assert (await july_invoice(api, access.token))["status"] == "PAID"
    assert (await standing(api, access.token))["state"] == "GOOD"


async def test_a_succeeded_webhook_settles_the_charge_whose_answer_was_lost_once_however_often_it_comes(
    api: Api,
    stripe_down_api: Api,
    staff_token: str,
    database: Database,
    gateway: StripeGateway,
    localstripe: LocalStripe,
    clock: SettableClock,
) -> None:
    access, invoice = await past_due_july(api, staff_token, localstripe, clock)
    card = await add_card(api, access.token, await card_typed_in(localstripe, VISA), make_primary=True)
    await payload(stripe_down_api, access.token, PAY, invoiceId=invoice["id"])
    lost = (await attempts_of(database, invoice["id"]))[-1]
    assert lost.status is AttemptStatus.UNKNOWN
    # Stripe did charge, but its answer never reached us: only the webhook tells.
    async with UnitOfWork(database, read_only=True) as uow:
        customer = await uow.customers.get(access.id)
    assert customer is not None
    charged = await charge(
        gateway, customer, card["id"], lost.amount, "usd", invoice["id"], lost.idempotency_key
    )
    intent = await stripe_object(localstripe, f"/v1/payment_intents/{charged.payment_intent_id}")
    body, signature = signed_event("payment_intent.succeeded", intent, f"evt_{lost.id}")

    first = await deliver(api, body, signature)
    second = await deliver(api, body, signature)

    assert (first.status_code, first.json()["outcome"]) == (200, "applied")
    assert (second.status_code, second.json()["outcome"]) == (200, "duplicate")
    assert (await july_invoice(api, access.token))["status"] == "PAID"
    settled = (await attempts_of(database, invoice["id"]))[-1]
    assert (settled.status, settled.payment_intent_id) == (AttemptStatus.SUCCEEDED, charged.payment_intent_id)
    async with UnitOfWork(database, read_only=True) as uow:
        payments = [e for e in await uow.events.after(access.id, 0) if e.action == "record_payment"]
    assert len(payments) == 1
    assert (await standing(api, access.token))["state"] == "GOOD"


@pytest.mark.parametrize("problem", ["tampered", "other_secret", "stale", "ten_years_ahead", "missing"])
async def test_a_webhook_with_a_bad_or_stale_signature_is_refused_and_changes_nothing(
    api: Api,
    staff_token: str,
    database: Database,
    localstripe: LocalStripe,
    clock: SettableClock,
    problem: str,
) -> None:
    access, invoice = await past_due_july(api, staff_token, localstripe, clock)
    intent = {"id": "pi_forged", "object": "payment_intent", "metadata": {"invoice_id": invoice["id"]}}
    body, signature = signed_event("payment_intent.succeeded", intent, f"evt_forged_{problem}_{access.id}")
    if problem == "tampered":
        body = body.replace(b"pi_forged", b"pi_forgeD")
    elif problem == "other_secret":
        signature = sign_webhook(body, "whsec_someone_else")
    elif problem == "stale":
        signature = sign_webhook(body, STRIPE_WEBHOOK_SECRET, int(time.time()) - 600)
    elif problem == "ten_years_ahead":
        signature = sign_webhook(body, STRIPE_WEBHOOK_SECRET, int(time.time()) + 10 * 365 * 86_400)
    else:
        signature = ""

    refused = await deliver(api, body, signature)

    assert refused.status_code == 400
    assert (await july_invoice(api, access.token))["status"] == "PAST_DUE"
    async with UnitOfWork(database, read_only=True) as uow:
        assert not await uow.webhook_events.seen(f"evt_forged_{problem}_{access.id}")


def unsigned(body: bytes) -> tuple[bytes, str]:
    """A body with a well-formed but wrong signature header, as an outsider would send it."""
    return body, f"t={int(time.time())},v1={'0' * 64}"


def signed(body: bytes) -> tuple[bytes, str]:
    return body, sign_webhook(body, STRIPE_WEBHOOK_SECRET)


@pytest.mark.parametrize(
    ("body", "signature"),
    [
        unsigned(b"\xff\xfe{not utf-8"),
        (b"\xff\xfe{not utf-8", "t=1,v1=abc"),
        (b"{}", "t=99999999999999999999999,v1=" + "0" * 64),
        (b"{}", "t=,v1="),
        unsigned(b"[" * 100_000),
        signed(b"[" * 100_000),
        signed(b'{"a":' * 50_000),
        signed(b"\xff\xfe{not utf-8"),
        signed(b"null"),
        signed(b"42"),
        signed(b"[]"),
        signed(b'"evt_1"'),
        signed(b'{"id": "evt_x", "type": "payment_intent.succeeded", "data": []}'),
        signed(b'{"id": 1, "type": "payment_intent.succeeded", "data": {"object": {}}}'),
    ],
)
async def test_a_webhook_body_that_is_not_a_signed_event_is_a_400_in_the_error_model(
    api: Api, body: bytes, signature: str
) -> None:
    refused = await deliver(api, body, signature)

    assert refused.status_code == 400
    assert refused.json()["code"] == "INVALID_INPUT"
    assert refused.json()["message"]
    assert refused.headers["X-Request-Id"]


async def test_a_non_ascii_signature_header_is_a_400(api: Api) -> None:
    refused = await api.client.post(
        "/webhooks/stripe", content=b"{}", headers={"Stripe-Signature": "t=1,v1=\xe9".encode("latin-1")}
    )
    assert (refused.status_code, refused.json()["code"]) == (400, "INVALID_INPUT")


async def test_a_card_detached_at_stripe_is_removed_the_next_promoted_and_the_last_pauses_issuing(
    api: Api, staff_token: str, localstripe: LocalStripe
) -> None:
    access = await partner_with(api, staff_token, localstripe, VISA, VISA)
    first, second = await cards_on_file(api, access.token)
    for card in (first, second):
        body, signature = signed_event(
            "payment_method.detached",
            {"id": card["id"], "object": "payment_method", "customer": None},
            f"evt_detach_{card['id']}",
        )
        assert (await deliver(api, body, signature)).status_code == 200
        if card is first:
            [left] = await cards_on_file(api, access.token)
            assert (left["id"], left["primary"]) == (second["id"], True)

    assert await cards_on_file(api, access.token) == []
    assert (await standing(api, access.token))["state"] == "NO_PAYMENT_METHOD"


async def test_a_failed_webhook_for_a_charge_whose_answer_was_lost_makes_the_open_invoice_past_due(
    api: Api,
    stripe_down_api: Api,
    staff_token: str,
    database: Database,
    localstripe: LocalStripe,
    clock: SettableClock,
) -> None:
    access = await partner_with(api, staff_token, localstripe, VISA)
    await issue(api, access.token)
    clock.advance_to(first_of(8))
    await close_month(stripe_down_api, "2026-07", staff_token)
    invoice = await july_invoice(api, access.token)
    [lost] = await attempts_of(database, invoice["id"])
    assert (invoice["status"], lost.status) == ("OPEN", AttemptStatus.UNKNOWN)
    intent = {
        "id": f"pi_lost_{lost.id}",
        "object": "payment_intent",
        "metadata": {"invoice_id": invoice["id"]},
        "last_payment_error": {"code": "card_declined"},
    }
    body, signature = signed_event("payment_intent.payment_failed", intent, f"evt_failed_{lost.id}")

    delivered = await deliver(api, body, signature)

    assert (delivered.status_code, delivered.json()["outcome"]) == (200, "applied")
    [failed] = await attempts_of(database, invoice["id"])
    assert (failed.status, failed.failure_code, failed.payment_intent_id) == (
        AttemptStatus.FAILED,
        "card_declined",
        f"pi_lost_{lost.id}",
    )
    assert (await july_invoice(api, access.token))["status"] == "PAST_DUE"
    owing = await standing(api, access.token)
    assert (owing["state"], owing["reasonInvoiceId"]) == ("PAST_DUE", invoice["id"])


async def test_nonpayment_revocation_runs_in_batches_and_the_next_run_finishes_one_that_stopped_midway(
    api: Api,
    staff_token: str,
    database: Database,
    gateway: StripeGateway,
    localstripe: LocalStripe,
    clock: SettableClock,
) -> None:
    access, invoice = await past_due_july(api, staff_token, localstripe, clock, licenses=5)
    policy = CollectionPolicy(revoke_batch_size=2)
    clock.advance_to(clock.now() + timedelta(days=28))
    async with UnitOfWork(database, read_only=True) as uow:
        dunning = await uow.dunning.dunning(invoice["id"])
    assert dunning is not None

    # A run that stopped after its first batch (a crash would leave the same: each batch commits alone).
    stopped = await revoke_licenses_for_nonpayment(
        database, dunning, now=clock.now(), batch_size=policy.revoke_batch_size, max_batches=1
    )
    counts = (await api.data(COUNTS, token=access.token))["licenseCounts"]
    finished = await run_dunning(database, gateway, now=clock.now(), policy=policy)
    again = await run_dunning(database, gateway, now=clock.now(), policy=policy)

    assert stopped == (2, False)
    assert (counts["revoked"], counts["issued"]) == (2, 3)
    # The session's database holds other tests' partners too: their due revocations run as well.
    assert finished.licenses_revoked >= 3 and finished.partners_revoked >= 1
    assert (again.licenses_revoked, again.partners_revoked) == (0, 0)
    assert (await api.data(COUNTS, token=access.token))["licenseCounts"]["revoked"] == 5
    async with UnitOfWork(database, read_only=True) as uow:
        events = await uow.events.after(access.id, 0)
    assert len([e for e in events if e.stream == "license" and e.action == "revoke"]) == 5
    assert [e.action for e in events if e.subject == invoice["id"]].count("licenses_revoked") == 1
