"""The Stripe gateway on the official SDK against a live localstripe: cards, defaults, charges, webhooks."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from app.devstripe import LocalStripe, free_port
from domain.errors import DomainError, ErrorCode
from payments.gateway import GatewayRefused, GatewayUnavailable, WebhookRejected
from payments.stripe_gateway import StripeGateway
from payments.webhooks import sign_webhook
from tests.charges import charge

API_KEY = "sk_test_gateway"
PUBLISHABLE_KEY = "pk_test_gateway"
WEBHOOK_SECRET = "whsec_gateway_tests"
VISA = "4242424242424242"
DECLINES_CHARGES = "4000000000000341"  # attaches fine, every charge is declined
DECLINED_ON_ATTACH = "4000000000000002"
NEEDS_AUTHENTICATION = "4000002500003155"  # 3-D Secure on every payment


@pytest.fixture
async def gateway(localstripe: LocalStripe) -> AsyncIterator[StripeGateway]:
    gateway = StripeGateway(API_KEY, localstripe.base_url, WEBHOOK_SECRET)
    yield gateway
    await gateway.close()


@pytest.fixture
async def stripe_api(localstripe: LocalStripe) -> AsyncIterator[httpx.AsyncClient]:
    """Stripe as a bystander sees it: what the browser does, and what Stripe's records say."""
    async with httpx.AsyncClient(base_url=localstripe.base_url, auth=(API_KEY, "")) as client:
        yield client


async def read(stripe_api: httpx.AsyncClient, path: str) -> dict[str, Any]:
    response = await stripe_api.get(path)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


async def confirm_in_browser(
    stripe_api: httpx.AsyncClient, setup_intent_id: str, client_secret: str, number: str
) -> str:
    """What Stripe.js does with the client secret and the card the partner typed: returns the card's id."""
    response = await stripe_api.post(
        f"/v1/setup_intents/{setup_intent_id}/confirm",
        auth=None,
        data={
            "key": PUBLISHABLE_KEY,
            "client_secret": client_secret,
            "payment_method_data[type]": "card",
            "payment_method_data[card][number]": number,
            "payment_method_data[card][exp_month]": "11",
            "payment_method_data[card][exp_year]": "2031",
            "payment_method_data[card][cvc]": "123",
        },
    )
    response.raise_for_status()
    intent = response.json()
    assert intent["status"] == "succeeded"
    return str(intent["payment_method"])


async def card_typed_in(stripe_api: httpx.AsyncClient, number: str) -> str:
    """A card created with Stripe but not yet attached to anyone."""
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


async def customer_with_card(
    gateway: StripeGateway, stripe_api: httpx.AsyncClient, number: str
) -> tuple[str, str]:
    customer = await gateway.create_customer(f"partner-{uuid.uuid4()}", "Acme Agency")
    card = await gateway.attach_payment_method(customer, await card_typed_in(stripe_api, number))
    return customer, card.id


def invoice_id() -> str:
    return f"inv-{uuid.uuid4()}"


async def test_new_partner_gets_a_customer_and_a_setup_intent_with_a_client_secret(
    gateway: StripeGateway, stripe_api: httpx.AsyncClient
) -> None:
    customer = await gateway.create_customer("partner-1", "Acme Agency")
    setup = await gateway.create_setup_intent(customer)

    assert setup.client_secret.startswith(f"{setup.id}_secret_")
    stored = await read(stripe_api, f"/v1/setup_intents/{setup.id}")
    assert (stored["customer"], stored["usage"]) == (customer, "off_session")
    assert (await read(stripe_api, f"/v1/customers/{customer}"))["metadata"] == {"partner_id": "partner-1"}


async def test_card_confirmed_in_the_browser_is_attached_with_brand_last4_and_expiry(
    gateway: StripeGateway, stripe_api: httpx.AsyncClient
) -> None:
    customer = await gateway.create_customer("partner-2", "Acme Agency")
    setup = await gateway.create_setup_intent(customer)
    typed = await confirm_in_browser(stripe_api, setup.id, setup.client_secret, VISA)

    card = await gateway.attach_payment_method(customer, typed)

    assert (card.id, card.brand, card.last4, card.exp_month, card.exp_year) == (
        typed,
        "visa",
        "4242",
        11,
        2031,
    )
    assert (await read(stripe_api, f"/v1/payment_methods/{typed}"))["customer"] == customer


async def test_attaching_a_card_twice_to_the_same_customer_is_harmless(
    gateway: StripeGateway, stripe_api: httpx.AsyncClient
) -> None:
    customer, card_id = await customer_with_card(gateway, stripe_api, VISA)

    again = await gateway.attach_payment_method(customer, card_id)

    assert (again.id, again.last4) == (card_id, "4242")


async def test_stripe_test_token_becomes_a_new_card_with_its_own_id(gateway: StripeGateway) -> None:
    customer = await gateway.create_customer("partner-3", "Acme Agency")

    card = await gateway.attach_payment_method(customer, "pm_card_visa")

    assert card.id != "pm_card_visa" and card.id.startswith("pm_")
    assert card.last4 == "4242"


@pytest.mark.parametrize("unknown", ["pm_doesNotExist123", "card_notAPaymentMethod", ""])
async def test_attaching_an_unknown_payment_method_is_refused_as_not_found(
    gateway: StripeGateway, unknown: str
) -> None:
    customer = await gateway.create_customer("partner-4", "Acme Agency")

    with pytest.raises(DomainError) as refused:
        await gateway.attach_payment_method(customer, unknown)

    assert (refused.value.code, refused.value.field) == (
        ErrorCode.PAYMENT_METHOD_NOT_FOUND,
        "paymentMethodId",
    )


async def test_card_on_file_with_another_customer_is_not_usable(
    gateway: StripeGateway, stripe_api: httpx.AsyncClient
) -> None:
    _, theirs = await customer_with_card(gateway, stripe_api, VISA)
    mine = await gateway.create_customer("partner-5", "Other Agency")

    with pytest.raises(DomainError) as refused:
        await gateway.attach_payment_method(mine, theirs)

    assert refused.value.code == ErrorCode.PAYMENT_METHOD_NOT_USABLE
    assert (await read(stripe_api, f"/v1/payment_methods/{theirs}"))["customer"] != mine


async def test_card_declined_when_verified_is_refused(
    gateway: StripeGateway, stripe_api: httpx.AsyncClient
) -> None:
    customer = await gateway.create_customer("partner-6", "Acme Agency")
    typed = await card_typed_in(stripe_api, DECLINED_ON_ATTACH)

    with pytest.raises(DomainError) as refused:
        await gateway.attach_payment_method(customer, typed)

    assert refused.value.code == ErrorCode.PAYMENT_METHOD_DECLINED
    assert (await read(stripe_api, f"/v1/payment_methods/{typed}"))["customer"] is None


async def test_primary_card_becomes_the_customers_invoice_default_and_can_be_cleared(
    gateway: StripeGateway, stripe_api: httpx.AsyncClient
) -> None:
    customer, card_id = await customer_with_card(gateway, stripe_api, VISA)

    await gateway.set_default_payment_method(customer, card_id)
    chosen = (await read(stripe_api, f"/v1/customers/{customer}"))["invoice_settings"]
    await gateway.set_default_payment_method(customer, None)
    cleared = (await read(stripe_api, f"/v1/customers/{customer}"))["invoice_settings"]

    assert chosen["default_payment_method"] == card_id
    assert cleared["default_payment_method"] is None


async def test_removed_card_is_detached_and_removing_it_again_is_not_found(
    gateway: StripeGateway, stripe_api: httpx.AsyncClient
) -> None:
    customer, card_id = await customer_with_card(gateway, stripe_api, VISA)

    await gateway.detach_payment_method(customer, card_id)
    with pytest.raises(DomainError) as again:
        await gateway.detach_payment_method(customer, card_id)

    assert (await read(stripe_api, f"/v1/payment_methods/{card_id}"))["customer"] is None
    assert again.value.code == ErrorCode.PAYMENT_METHOD_NOT_FOUND


async def test_a_partner_cannot_remove_another_partners_card(
    gateway: StripeGateway, stripe_api: httpx.AsyncClient
) -> None:
    owner, card_id = await customer_with_card(gateway, stripe_api, VISA)
    stranger = await gateway.create_customer("partner-7", "Other Agency")

    with pytest.raises(DomainError) as refused:
        await gateway.detach_payment_method(stranger, card_id)

    assert refused.value.code == ErrorCode.PAYMENT_METHOD_NOT_FOUND
    assert (await read(stripe_api, f"/v1/payment_methods/{card_id}"))["customer"] == owner


async def test_good_card_is_charged_off_session_with_the_invoice_id_in_metadata(
    gateway: StripeGateway, stripe_api: httpx.AsyncClient
) -> None:
    customer, card_id = await customer_with_card(gateway, stripe_api, VISA)
    invoice = invoice_id()

    outcome = await charge(gateway, customer, card_id, 1023, "USD", invoice, f"{invoice}-attempt-1")

    assert outcome.succeeded and outcome.failure_code is None
    intent = await read(stripe_api, f"/v1/payment_intents/{outcome.payment_intent_id}")
    assert intent["status"] == "succeeded"
    assert (intent["amount"], intent["currency"], intent["customer"], intent["payment_method"]) == (
        1023,
        "usd",
        customer,
        card_id,
    )
    assert intent["metadata"] == {"invoice_id": invoice}


async def test_card_4000000000000341_attaches_but_its_charge_fails_with_a_code_not_an_exception(
    gateway: StripeGateway, stripe_api: httpx.AsyncClient
) -> None:
    customer, card_id = await customer_with_card(gateway, stripe_api, DECLINES_CHARGES)
    invoice = invoice_id()

    outcome = await charge(gateway, customer, card_id, 500, "usd", invoice, f"{invoice}-attempt-1")

    assert outcome.status == "failed"
    assert (outcome.failure_code, outcome.failure_message) == ("card_declined", "Your card was declined.")
    intent = await read(stripe_api, f"/v1/payment_intents/{outcome.payment_intent_id}")
    assert intent["status"] == "requires_payment_method"
    assert intent["metadata"] == {"invoice_id": invoice}
    assert intent["last_payment_error"]["code"] == "card_declined"


async def test_card_that_needs_the_cardholder_to_authenticate_fails_off_session(
    gateway: StripeGateway, stripe_api: httpx.AsyncClient
) -> None:
    customer, card_id = await customer_with_card(gateway, stripe_api, NEEDS_AUTHENTICATION)
    invoice = invoice_id()

    outcome = await charge(gateway, customer, card_id, 500, "usd", invoice, f"{invoice}-attempt-1")

    assert (outcome.status, outcome.failure_code) == ("failed", "authentication_required")
    intent = await read(stripe_api, f"/v1/payment_intents/{outcome.payment_intent_id}")
    assert intent["status"] == "requires_action"


async def test_declined_primary_falls_back_to_the_second_card_and_the_invoice_is_paid_once(
    gateway: StripeGateway, stripe_api: httpx.AsyncClient
) -> None:
    customer, primary = await customer_with_card(gateway, stripe_api, DECLINES_CHARGES)
    second = (await gateway.attach_payment_method(customer, await card_typed_in(stripe_api, VISA))).id
    invoice = invoice_id()

    outcomes = [
        await charge(gateway, customer, card, 4200, "usd", invoice, f"{invoice}-attempt-{n}")
        for n, card in enumerate([primary, second], start=1)
    ]

    assert [o.status for o in outcomes] == ["failed", "succeeded"]
    # Read each attempt's PaymentIntent back by id (a session's localstripe holds more than a list page).
    intents = [await read(stripe_api, f"/v1/payment_intents/{o.payment_intent_id}") for o in outcomes]
    assert [(i["payment_method"], i["status"], i["metadata"]["invoice_id"]) for i in intents] == [
        (primary, "requires_payment_method", invoice),
        (second, "succeeded", invoice),
    ]


async def test_a_payment_intent_is_created_unconfirmed_and_moves_no_money_until_confirmed(
    gateway: StripeGateway, stripe_api: httpx.AsyncClient
) -> None:
    customer, card_id = await customer_with_card(gateway, stripe_api, VISA)
    invoice = invoice_id()

    intent_id = await gateway.create_payment_intent(
        customer, card_id, 800, "usd", invoice, f"{invoice}-attempt-1"
    )

    created = await read(stripe_api, f"/v1/payment_intents/{intent_id}")
    assert (created["status"], created["latest_charge"]) == ("requires_confirmation", None)
    assert (await gateway.confirm_payment_intent(intent_id)).succeeded


async def test_resuming_a_payment_intent_confirms_it_only_if_it_still_needs_it(
    gateway: StripeGateway, stripe_api: httpx.AsyncClient
) -> None:
    customer, card_id = await customer_with_card(gateway, stripe_api, VISA)
    invoice = invoice_id()
    intent_id = await gateway.create_payment_intent(
        customer, card_id, 900, "usd", invoice, f"{invoice}-attempt-1"
    )

    confirmed = await gateway.resume_payment_intent(intent_id)  # its confirmation never happened
    again = await gateway.resume_payment_intent(intent_id)  # confirmed, its answer lost: only retrieved

    # (Confirming a succeeded intent again is a 400 at Stripe and localstripe: `again` only retrieved it.)
    assert confirmed == again
    assert confirmed.succeeded and confirmed.payment_intent_id == intent_id
    assert (await read(stripe_api, f"/v1/payment_intents/{intent_id}"))["status"] == "succeeded"


async def test_resuming_a_declined_payment_intent_answers_its_decline(
    gateway: StripeGateway, stripe_api: httpx.AsyncClient
) -> None:
    customer, card_id = await customer_with_card(gateway, stripe_api, DECLINES_CHARGES)
    invoice = invoice_id()
    declined = await charge(gateway, customer, card_id, 500, "usd", invoice, f"{invoice}-attempt-1")
    assert declined.payment_intent_id is not None

    resumed = await gateway.resume_payment_intent(declined.payment_intent_id)

    assert (resumed.status, resumed.failure_code) == ("failed", "card_declined")


async def test_a_succeeded_payment_is_refunded_in_full_and_a_failed_one_is_refused(
    gateway: StripeGateway, stripe_api: httpx.AsyncClient
) -> None:
    customer, card_id = await customer_with_card(gateway, stripe_api, VISA)
    invoice = invoice_id()
    paid = await charge(gateway, customer, card_id, 1200, "usd", invoice, f"{invoice}-attempt-1")
    assert paid.payment_intent_id is not None

    refund_id = await gateway.refund_payment(paid.payment_intent_id, f"refund-{paid.payment_intent_id}")

    refund = await read(stripe_api, f"/v1/refunds/{refund_id}")
    assert (refund["amount"], refund["status"]) == (1200, "succeeded")
    declining = (
        await gateway.attach_payment_method(customer, await card_typed_in(stripe_api, DECLINES_CHARGES))
    ).id
    failed = await charge(gateway, customer, declining, 1200, "usd", invoice, f"{invoice}-attempt-2")
    assert failed.payment_intent_id is not None
    with pytest.raises(GatewayRefused) as refused:
        await gateway.refund_payment(failed.payment_intent_id, f"refund-{failed.payment_intent_id}")
    assert "refund" in refused.value.message.lower()


async def test_localstripe_ignores_idempotency_keys_so_our_attempt_rows_must_prevent_double_charges(
    gateway: StripeGateway, stripe_api: httpx.AsyncClient
) -> None:
    """Pins the README's premise (localstripe ignores idempotency keys): if localstripe starts honouring
    keys, this fails and the note can go."""
    customer, card_id = await customer_with_card(gateway, stripe_api, VISA)
    invoice = invoice_id()

    first = await charge(gateway, customer, card_id, 700, "usd", invoice, f"{invoice}-attempt-1")
    replay = await charge(gateway, customer, card_id, 700, "usd", invoice, f"{invoice}-attempt-1")

    assert first.succeeded and replay.succeeded
    assert first.payment_intent_id != replay.payment_intent_id


async def test_stripe_unreachable_is_gateway_unavailable_for_every_call() -> None:
    closed = StripeGateway(API_KEY, f"http://127.0.0.1:{free_port()}", WEBHOOK_SECRET, max_network_retries=1)
    try:
        calls = [
            closed.create_customer("partner-8", "Acme Agency"),
            closed.create_setup_intent("cus_x"),
            closed.attach_payment_method("cus_x", "pm_x"),
            closed.detach_payment_method("cus_x", "pm_x"),
            closed.set_default_payment_method("cus_x", "pm_x"),
            charge(closed, "cus_x", "pm_x", 100, "usd", "inv-1", "inv-1-attempt-1"),
        ]
        for call in calls:
            with pytest.raises(GatewayUnavailable) as down:
                await call
            assert down.value.code == ErrorCode.PAYMENT_GATEWAY_UNAVAILABLE
    finally:
        await closed.close()


def signed(payload: bytes, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    return sign_webhook(payload, secret, at)


EVENT = json.dumps(
    {
        "id": "evt_1",
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": 1_700_000_000,
        "data": {"object": {"id": "pi_1", "object": "payment_intent", "metadata": {"invoice_id": "inv-9"}}},
    }
).encode()


def test_webhook_signed_with_our_secret_parses(gateway: StripeGateway) -> None:
    event = gateway.parse_webhook(EVENT, signed(EVENT))

    assert (event.id, event.type, event.object_id, event.invoice_id) == (
        "evt_1",
        "payment_intent.succeeded",
        "pi_1",
        "inv-9",
    )


def test_webhook_signed_by_hand_the_way_stripe_does_parses(gateway: StripeGateway) -> None:
    import hashlib
    import hmac

    at = int(time.time())
    mac = hmac.new(WEBHOOK_SECRET.encode(), f"{at}.".encode() + EVENT, hashlib.sha256).hexdigest()

    assert gateway.parse_webhook(EVENT, f"t={at},v1={mac}").id == "evt_1"


def tampered() -> tuple[bytes, str]:
    return EVENT.replace(b"inv-9", b"inv-0"), signed(EVENT)


def other_secret() -> tuple[bytes, str]:
    return EVENT, signed(EVENT, secret="whsec_someone_else")


def stale() -> tuple[bytes, str]:
    return EVENT, signed(EVENT, at=int(time.time()) - 600)


def no_header() -> tuple[bytes, str]:
    return EVENT, ""


def malformed_header() -> tuple[bytes, str]:
    return EVENT, "garbage"


def signed_but_not_an_event() -> tuple[bytes, str]:
    return b"not json", signed(b"not json")


@pytest.mark.parametrize(
    "delivery", [tampered, other_secret, stale, no_header, malformed_header, signed_but_not_an_event]
)
def test_webhook_with_a_bad_or_stale_signature_is_rejected(
    gateway: StripeGateway, delivery: Callable[[], tuple[bytes, str]]
) -> None:
    payload, header = delivery()

    with pytest.raises(WebhookRejected):
        gateway.parse_webhook(payload, header)


@pytest.fixture
def webhook_receiver() -> Iterator[tuple[str, queue.Queue[tuple[bytes, str]]]]:
    """A local endpoint that records what localstripe POSTs to it."""
    received: queue.Queue[tuple[bytes, str]] = queue.Queue()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.put((body, self.headers.get("Stripe-Signature", "")))
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/webhooks/stripe", received
    finally:
        server.shutdown()
        server.server_close()


async def test_localstripe_posts_signed_payment_intent_webhooks_that_the_gateway_verifies(
    gateway: StripeGateway,
    stripe_api: httpx.AsyncClient,
    localstripe: LocalStripe,
    webhook_receiver: tuple[str, queue.Queue[tuple[bytes, str]]],
) -> None:
    url, received = webhook_receiver
    events = ["payment_intent.succeeded", "payment_intent.payment_failed"]
    localstripe.register_webhook("gateway-test", url, WEBHOOK_SECRET, events)
    customer, card_id = await customer_with_card(gateway, stripe_api, VISA)
    invoice = invoice_id()

    outcome = await charge(gateway, customer, card_id, 999, "usd", invoice, f"{invoice}-attempt-1")
    event = None
    for _ in range(300):  # localstripe sends about a second after the charge
        try:
            payload, header = received.get_nowait()
        except queue.Empty:
            await asyncio.sleep(0.05)
            continue
        parsed = gateway.parse_webhook(payload, header)
        if parsed.object_id == outcome.payment_intent_id:
            event = parsed
            break
    # Point the hook at nothing that answers, so later tests' events do not come here.
    localstripe.register_webhook("gateway-test", f"http://127.0.0.1:{free_port()}/", WEBHOOK_SECRET, events)

    assert event is not None, "localstripe sent no webhook for the charge"
    assert (event.type, event.invoice_id) == ("payment_intent.succeeded", invoice)
    assert event.id.startswith("evt_")
