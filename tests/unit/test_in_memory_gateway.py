"""The in-memory gateway behaves like Stripe's test mode, so use-case tests can rely on it."""

from __future__ import annotations

import time

import pytest

from domain.errors import DomainError, ErrorCode
from payments.gateway import GatewayRefused, GatewayUnavailable, WebhookRejected
from payments.webhooks import sign_webhook, verify_webhook
from tests.charges import charge
from tests.memory_gateway import InMemoryGateway, Outage


@pytest.fixture
def gateway() -> InMemoryGateway:
    return InMemoryGateway()


async def customer_with(
    gateway: InMemoryGateway, *tokens: str, partner: str = "partner-1"
) -> tuple[str, list[str]]:
    customer = await gateway.create_customer(partner, f"Agency {partner}")
    cards = [(await gateway.attach_payment_method(customer, token)).id for token in tokens]
    return customer, cards


async def test_one_customer_per_partner_even_when_asked_twice(gateway: InMemoryGateway) -> None:
    first = await gateway.create_customer("partner-1", "Acme Agency")
    second = await gateway.create_customer("partner-1", "Acme Agency")
    other = await gateway.create_customer("partner-2", "Other Agency")

    assert first == second != other


async def test_setup_intent_carries_a_client_secret(gateway: InMemoryGateway) -> None:
    customer = await gateway.create_customer("partner-1", "Acme Agency")

    setup = await gateway.create_setup_intent(customer)

    assert setup.client_secret.startswith(f"{setup.id}_secret_")


async def test_test_token_attaches_as_a_new_card_with_brand_last4_and_expiry(
    gateway: InMemoryGateway,
) -> None:
    customer = await gateway.create_customer("partner-1", "Acme Agency")

    first = await gateway.attach_payment_method(customer, "pm_card_mastercard")
    second = await gateway.attach_payment_method(customer, "pm_card_mastercard")

    assert (first.brand, first.last4, first.exp_month, first.exp_year) == ("mastercard", "4444", 12, 2034)
    assert first.id != second.id != "pm_card_mastercard"


async def test_card_typed_in_the_browser_attaches_with_its_own_id(gateway: InMemoryGateway) -> None:
    customer = await gateway.create_customer("partner-1", "Acme Agency")
    typed = gateway.add_card("4000056655665556", "visa", exp_year=2031)

    card = await gateway.attach_payment_method(customer, typed)

    assert (card.id, card.last4, card.exp_year) == (typed, "5556", 2031)


async def test_unknown_card_is_not_found(gateway: InMemoryGateway) -> None:
    customer = await gateway.create_customer("partner-1", "Acme Agency")

    with pytest.raises(DomainError) as refused:
        await gateway.attach_payment_method(customer, "pm_nope")

    assert refused.value.code is ErrorCode.PAYMENT_METHOD_NOT_FOUND


async def test_card_on_file_with_another_partner_is_not_usable(gateway: InMemoryGateway) -> None:
    _, [theirs] = await customer_with(gateway, "pm_card_visa", partner="partner-3")
    mine = await gateway.create_customer("partner-2", "Other Agency")

    with pytest.raises(DomainError) as refused:
        await gateway.attach_payment_method(mine, theirs)

    assert refused.value.code is ErrorCode.PAYMENT_METHOD_NOT_USABLE


async def test_card_declined_when_verified_is_refused(gateway: InMemoryGateway) -> None:
    customer = await gateway.create_customer("partner-1", "Acme Agency")

    with pytest.raises(DomainError) as refused:
        await gateway.attach_payment_method(customer, "pm_card_visa_chargeDeclined")

    assert refused.value.code is ErrorCode.PAYMENT_METHOD_DECLINED


async def test_default_card_must_be_on_file_and_detaching_it_clears_the_default(
    gateway: InMemoryGateway,
) -> None:
    customer, [card] = await customer_with(gateway, "pm_card_visa")
    _, [stranger_card] = await customer_with(gateway, "pm_card_amex", partner="partner-2")

    with pytest.raises(DomainError) as refused:
        await gateway.set_default_payment_method(customer, stranger_card)
    await gateway.set_default_payment_method(customer, card)
    chosen = gateway.defaults[customer]
    await gateway.detach_payment_method(customer, card)

    assert refused.value.code is ErrorCode.PAYMENT_METHOD_NOT_FOUND
    assert (chosen, gateway.defaults[customer]) == (card, None)


async def test_detaching_twice_is_not_found_the_second_time(gateway: InMemoryGateway) -> None:
    customer, [card] = await customer_with(gateway, "pm_card_visa")

    await gateway.detach_payment_method(customer, card)
    with pytest.raises(DomainError) as again:
        await gateway.detach_payment_method(customer, card)

    assert again.value.code is ErrorCode.PAYMENT_METHOD_NOT_FOUND


async def test_good_card_is_charged_and_recorded_with_the_invoice(gateway: InMemoryGateway) -> None:
    customer, [card] = await customer_with(gateway, "pm_card_visa")

    outcome = await charge(gateway, customer, card, 1023, "USD", "inv-1", "inv-1-attempt-1")

    assert outcome.succeeded and outcome.payment_intent_id
    [recorded] = gateway.succeeded_charges("inv-1")
    assert (recorded.amount_minor, recorded.currency, recorded.payment_method_id) == (1023, "usd", card)


async def test_card_0341_attaches_but_its_charges_fail_without_an_exception(gateway: InMemoryGateway) -> None:
    customer, [card] = await customer_with(gateway, "pm_card_chargeCustomerFail")

    outcome = await charge(gateway, customer, card, 500, "usd", "inv-1", "inv-1-attempt-1")

    assert (outcome.status, outcome.failure_code, outcome.decline_code) == (
        "failed",
        "card_declined",
        "generic_decline",
    )
    assert outcome.payment_intent_id and gateway.succeeded_charges("inv-1") == []


async def test_a_card_no_longer_on_file_is_refused_so_the_next_card_can_be_tried(
    gateway: InMemoryGateway,
) -> None:
    customer, [gone, kept] = await customer_with(gateway, "pm_card_visa", "pm_card_mastercard")
    await gateway.detach_payment_method(customer, gone)

    with pytest.raises(GatewayRefused) as refused:
        await charge(gateway, customer, gone, 500, "usd", "inv-1", "inv-1-gone")
    kept_outcome = await charge(gateway, customer, kept, 500, "usd", "inv-1", "inv-1-kept")

    assert refused.value.code == "resource_missing"
    assert kept_outcome.status == "succeeded"


async def test_the_same_idempotency_key_returns_the_first_answer_and_charges_once(
    gateway: InMemoryGateway,
) -> None:
    customer, [card] = await customer_with(gateway, "pm_card_visa")

    first = await charge(gateway, customer, card, 700, "usd", "inv-1", "inv-1-attempt-1")
    replay = await charge(gateway, customer, card, 700, "usd", "inv-1", "inv-1-attempt-1")

    assert first == replay
    assert len(gateway.charges) == 1


async def test_refused_connection_charges_nothing_and_a_later_retry_charges_once(
    gateway: InMemoryGateway,
) -> None:
    customer, [card] = await customer_with(gateway, "pm_card_visa")
    gateway.outage = Outage.REFUSED

    with pytest.raises(GatewayUnavailable) as down:
        await charge(gateway, customer, card, 700, "usd", "inv-1", "inv-1-attempt-1")
    charged_while_down = list(gateway.charges)
    gateway.outage = None
    retried = await charge(gateway, customer, card, 700, "usd", "inv-1", "inv-1-attempt-1")

    assert down.value.code is ErrorCode.PAYMENT_GATEWAY_UNAVAILABLE
    assert charged_while_down == []
    assert retried.succeeded and len(gateway.succeeded_charges("inv-1")) == 1


async def test_lost_answer_charged_once_and_the_retry_with_the_same_key_learns_it(
    gateway: InMemoryGateway,
) -> None:
    customer, [card] = await customer_with(gateway, "pm_card_visa")
    gateway.outage = Outage.ANSWER_LOST

    with pytest.raises(GatewayUnavailable):
        await charge(gateway, customer, card, 700, "usd", "inv-1", "inv-1-attempt-1")
    gateway.outage = None
    retried = await charge(gateway, customer, card, 700, "usd", "inv-1", "inv-1-attempt-1")

    assert retried.succeeded
    assert len(gateway.succeeded_charges("inv-1")) == 1


async def test_every_call_is_unavailable_while_the_gateway_is_down(gateway: InMemoryGateway) -> None:
    customer, [card] = await customer_with(gateway, "pm_card_visa")
    gateway.outage = Outage.REFUSED

    calls = [
        gateway.create_customer("partner-9", "Late Agency"),
        gateway.create_setup_intent(customer),
        gateway.attach_payment_method(customer, "pm_card_visa"),
        gateway.set_default_payment_method(customer, card),
        gateway.detach_payment_method(customer, card),
    ]
    for call in calls:
        with pytest.raises(GatewayUnavailable):
            await call

    assert gateway.cards[card].customer_id == customer and gateway.defaults[customer] is None


async def test_zero_amounts_are_never_sent_to_the_provider(gateway: InMemoryGateway) -> None:
    customer, [card] = await customer_with(gateway, "pm_card_visa")

    with pytest.raises(ValueError):
        await charge(gateway, customer, card, 0, "usd", "inv-1", "inv-1-attempt-1")

    assert gateway.charges == []


async def test_unknown_customer_is_a_refusal_not_a_user_error(gateway: InMemoryGateway) -> None:
    with pytest.raises(GatewayRefused):
        await gateway.create_setup_intent("cus_unknown")


def test_signed_webhook_parses_and_a_tampered_or_stale_one_is_rejected(gateway: InMemoryGateway) -> None:
    subject = {"id": "pi_1", "object": "payment_intent", "metadata": {"invoice_id": "inv-1"}}
    payload, header = gateway.webhook("payment_intent.succeeded", subject, event_id="evt_1")
    stale_payload, stale_header = gateway.webhook(
        "payment_intent.succeeded", subject, at=int(time.time()) - gateway.webhook_tolerance_seconds - 60
    )

    event = gateway.parse_webhook(payload, header)
    with pytest.raises(WebhookRejected):
        gateway.parse_webhook(payload.replace(b"inv-1", b"inv-2"), header)
    with pytest.raises(WebhookRejected):
        gateway.parse_webhook(stale_payload, stale_header)

    assert (event.id, event.type, event.object_id, event.invoice_id) == (
        "evt_1",
        "payment_intent.succeeded",
        "pi_1",
        "inv-1",
    )


EVENT = b'{"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": {"id": "pi_1"}}}'


@pytest.mark.parametrize(("signed_at", "accepted"), [(-300, True), (300, True), (-301, False), (301, False)])
def test_a_signature_is_accepted_within_five_minutes_of_now_either_way(
    signed_at: int, accepted: bool
) -> None:
    now = 1_800_000_000
    header = sign_webhook(EVENT, "whsec_x", now + signed_at)
    if accepted:
        assert verify_webhook(EVENT, header, "whsec_x", now=now).id == "evt_1"
    else:
        with pytest.raises(WebhookRejected, match="from now"):
            verify_webhook(EVENT, header, "whsec_x", now=now)


def test_a_signature_is_checked_on_the_raw_bytes_before_they_are_decoded() -> None:
    body = b"\xff\xfe not utf-8"
    with pytest.raises(WebhookRejected, match="matches"):
        verify_webhook(body, f"t={int(time.time())},v1={'a' * 64}", "whsec_x")
    with pytest.raises(WebhookRejected, match="UTF-8"):
        verify_webhook(body, sign_webhook(body, "whsec_x"), "whsec_x")
