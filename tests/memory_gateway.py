"""A deterministic in-memory gateway for unit and use-case tests, behaving like Stripe's test mode.

Test cards, as on Stripe: `pm_card_visa`, `pm_card_mastercard` and `pm_card_amex` attach and charge;
`pm_card_chargeCustomerFail` (4000 0000 0000 0341) attaches but every charge is declined;
`pm_card_visa_chargeDeclined` (4000 0000 0000 0002) is declined when attached (Stripe verifies a
card on attach, so its other decline cards fail there too). Like Stripe, attaching a `pm_card_*` token
makes a new card with its own id.
`add_card` makes a card the way the browser would (a SetupIntent confirmed with card details).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import secrets
import time
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from payments.gateway import (
    CardDetails,
    ChargeOutcome,
    GatewayRefused,
    GatewayUnavailable,
    PaymentGateway,
    SetupIntentRef,
    WebhookEvent,
    payment_method_declined,
    payment_method_not_found,
    payment_method_not_usable,
)
from payments.webhooks import DEFAULT_TOLERANCE_SECONDS, sign_webhook, verify_webhook

WEBHOOK_SECRET = "whsec_in_memory"


@dataclass(frozen=True)
class TestCard:
    number: str
    brand: str
    exp_month: int = 12
    exp_year: int = 2034
    # None: every charge succeeds; otherwise the decline (code, decline_code, message).
    charge_decline: tuple[str, str, str] | None = None
    declined_on_attach: bool = False

    __test__ = False  # not a pytest test class


GENERIC_DECLINE = ("card_declined", "generic_decline", "Your card was declined.")
TEST_CARDS: dict[str, TestCard] = {
    "pm_card_visa": TestCard("4242424242424242", "visa"),
    "pm_card_mastercard": TestCard("5555555555554444", "mastercard"),
    "pm_card_amex": TestCard("378282246310005", "amex"),
    "pm_card_chargeCustomerFail": TestCard("4000000000000341", "visa", charge_decline=GENERIC_DECLINE),
    "pm_card_visa_chargeDeclined": TestCard("4000000000000002", "visa", declined_on_attach=True),
}


class Outage(Enum):
    """How the gateway is down: requests never arrive, or they are applied but the answer is lost."""

    REFUSED = "refused"
    ANSWER_LOST = "answer_lost"
    # Only the charge itself times out: the PaymentIntent is created, confirmed, and the answer lost.
    CONFIRM_ANSWER_LOST = "confirm_answer_lost"


@dataclass
class StoredCard:
    id: str
    card: TestCard
    customer_id: str | None = None


@dataclass
class StoredIntent:
    """A PaymentIntent: created unconfirmed; `outcome` is set once it is confirmed (money moved when it
    succeeded)."""

    id: str
    customer_id: str
    payment_method_id: str
    amount_minor: int
    currency: str
    invoice_id: str
    idempotency_key: str
    outcome: ChargeOutcome | None = None


@dataclass(frozen=True)
class StoredRefund:
    payment_intent_id: str
    amount: int
    refund_id: str | None  # ours, from the refund's metadata


class InMemoryGateway:
    """PaymentGateway without a network. Tests read `charges` and `defaults`; `outage` takes it down."""

    def __init__(
        self, webhook_secret: str = WEBHOOK_SECRET, webhook_tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS
    ) -> None:
        self.webhook_secret = webhook_secret
        self.webhook_tolerance_seconds = webhook_tolerance_seconds
        self.outage: Outage | None = None
        self.customers: dict[str, str] = {}  # customer id → partner id
        self.defaults: dict[str, str | None] = {}  # customer id → invoice default card
        self.cards: dict[str, StoredCard] = {}
        self.setup_intents: dict[str, str] = {}  # setup intent id → customer id
        self.intents: dict[str, StoredIntent] = {}
        self.charges: list[StoredIntent] = []  # each confirmation, as it was confirmed
        self.refunds: dict[str, str] = {}  # refund id → PaymentIntent id
        self.refund_details: dict[str, StoredRefund] = {}  # refund id → what was refunded
        # (code, message): every refund is refused, as Stripe refuses e.g. a disputed charge's.
        self.refuse_refunds: tuple[str, str] | None = None
        # An unset event holds every confirmation (or retrieval) until it is set: a charge in flight.
        self.confirm_gate: asyncio.Event | None = None
        self.confirms_waiting = 0
        self._by_key: dict[str, str] = {}  # idempotency key → PaymentIntent id
        self._refund_by_key: dict[str, str] = {}
        self._customer_by_partner: dict[str, str] = {}
        self._ids = itertools.count(1)
        # Ids differ between instances too: tests sharing one database may each have their own gateway.
        self._instance = secrets.token_hex(3)

    # What the browser and Stripe's dashboard do, for tests.

    def add_card(self, number: str = "4242424242424242", brand: str = "visa", *, exp_year: int = 2034) -> str:
        """Create a card that belongs to no one yet (as confirming a SetupIntent in the browser does)."""
        matching = next((card for card in TEST_CARDS.values() if card.number == number), None)
        card = matching or TestCard(number, brand, exp_year=exp_year)
        stored = StoredCard(self._new_id("pm"), card)
        self.cards[stored.id] = stored
        return stored.id

    def webhook(
        self, event_type: str, subject: dict[str, Any], *, event_id: str | None = None, at: int | None = None
    ) -> tuple[bytes, str]:
        """A signed webhook body and Stripe-Signature header, as Stripe would POST it."""
        at = int(time.time()) if at is None else at
        event = {
            "id": event_id or self._new_id("evt"),
            "object": "event",
            "type": event_type,
            "created": at,
            "data": {"object": subject},
        }
        payload = json.dumps(event).encode()
        return payload, sign_webhook(payload, self.webhook_secret, at)

    def succeeded_charges(self, invoice_id: str) -> list[StoredIntent]:
        return [
            c
            for c in self.charges
            if c.invoice_id == invoice_id and c.outcome is not None and c.outcome.succeeded
        ]

    # The PaymentGateway protocol.

    async def create_customer(self, partner_id: str, name: str) -> str:
        self._refuse_if_down()
        # Like an idempotency key per partner: a lost answer does not make a second customer.
        customer_id = self._customer_by_partner.get(partner_id)
        if customer_id is None:
            customer_id = self._new_id("cus")
            self._customer_by_partner[partner_id] = customer_id
            self.customers[customer_id] = partner_id
            self.defaults[customer_id] = None
        self._lose_answer_if_down()
        return customer_id

    async def create_setup_intent(self, customer_id: str) -> SetupIntentRef:
        self._refuse_if_down()
        self._require_customer(customer_id)
        intent_id = self._new_id("seti")
        self.setup_intents[intent_id] = customer_id
        self._lose_answer_if_down()
        return SetupIntentRef(id=intent_id, client_secret=f"{intent_id}_secret_{next(self._ids):08d}")

    async def attach_payment_method(self, customer_id: str, payment_method_id: str) -> CardDetails:
        self._refuse_if_down()
        self._require_customer(customer_id)
        if payment_method_id in TEST_CARDS:
            stored = StoredCard(self._new_id("pm"), TEST_CARDS[payment_method_id])
            self.cards[stored.id] = stored
        elif payment_method_id in self.cards:
            stored = self.cards[payment_method_id]
        else:
            raise payment_method_not_found(payment_method_id)
        if stored.customer_id not in (None, customer_id):
            raise payment_method_not_usable(
                f"Payment method {payment_method_id!r} is already on file with another account."
            )
        if stored.card.declined_on_attach:
            raise payment_method_declined("Your card was declined.")
        stored.customer_id = customer_id
        self._lose_answer_if_down()
        card = stored.card
        return CardDetails(stored.id, card.brand, card.number[-4:], card.exp_month, card.exp_year)

    async def detach_payment_method(self, customer_id: str, payment_method_id: str) -> None:
        self._refuse_if_down()
        stored = self.cards.get(payment_method_id)
        if stored is None or stored.customer_id != customer_id:
            raise payment_method_not_found(payment_method_id)
        stored.customer_id = None
        # Stripe clears the invoice default when that card is detached.
        if self.defaults.get(customer_id) == payment_method_id:
            self.defaults[customer_id] = None
        self._lose_answer_if_down()

    async def set_default_payment_method(self, customer_id: str, payment_method_id: str | None) -> None:
        self._refuse_if_down()
        self._require_customer(customer_id)
        if payment_method_id is not None:
            stored = self.cards.get(payment_method_id)
            if stored is None or stored.customer_id != customer_id:
                raise payment_method_not_found(payment_method_id)
        self.defaults[customer_id] = payment_method_id
        self._lose_answer_if_down()

    async def create_payment_intent(
        self,
        customer_id: str,
        payment_method_id: str,
        amount_minor: int,
        currency: str,
        invoice_id: str,
        idempotency_key: str,
    ) -> str:
        if amount_minor <= 0:
            raise ValueError("Only positive amounts are charged; a zero invoice is paid without a charge.")
        self._refuse_if_down()
        replay = self._by_key.get(idempotency_key)
        if replay is None:
            # Stripe's idempotency: the same key (within its memory) returns the first PaymentIntent.
            self._require_customer(customer_id)
            intent = StoredIntent(
                self._new_id("pi"),
                customer_id,
                payment_method_id,
                amount_minor,
                currency.lower(),
                invoice_id,
                idempotency_key,
            )
            self.intents[intent.id] = intent
            self._by_key[idempotency_key] = intent.id
            replay = intent.id
        self._lose_answer_if_down()
        return replay

    async def confirm_payment_intent(self, payment_intent_id: str) -> ChargeOutcome:
        self._refuse_if_down()
        await self._wait_at_gate()
        intent = self._intent(payment_intent_id)
        if intent.outcome is None:
            intent.outcome = self._charge_card(intent)
            self.charges.append(dataclasses.replace(intent))
        self._lose_answer_if_down(confirming=True)
        return intent.outcome

    async def resume_payment_intent(self, payment_intent_id: str) -> ChargeOutcome:
        self._refuse_if_down()
        intent = self._intent(payment_intent_id)
        if intent.outcome is None:
            return await self.confirm_payment_intent(payment_intent_id)
        await self._wait_at_gate()
        self._lose_answer_if_down()
        return intent.outcome

    async def refund_payment(
        self,
        payment_intent_id: str,
        idempotency_key: str,
        *,
        amount_minor: int | None = None,
        refund_id: str | None = None,
    ) -> str:
        self._refuse_if_down()
        known = self._refund_by_key.get(idempotency_key)
        if known is not None:
            return known
        intent = self.intents.get(payment_intent_id)
        if intent is None:
            raise GatewayRefused(f"No such PaymentIntent: {payment_intent_id!r}.", "resource_missing")
        if intent.outcome is None or not intent.outcome.succeeded:
            raise GatewayRefused("Cannot refund a payment that did not succeed.", "charge_not_refundable")
        if self.refuse_refunds is not None:
            code, message = self.refuse_refunds
            raise GatewayRefused(message, code)
        left = intent.amount_minor - self.refunded(payment_intent_id)
        amount = left if amount_minor is None else amount_minor
        if left <= 0:
            raise GatewayRefused("The charge has already been refunded.", "charge_already_refunded")
        if amount > left:
            raise GatewayRefused(
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left}).",
                "amount_too_large",
            )
        stripe_id = self._new_id("re")
        self.refunds[stripe_id] = payment_intent_id
        self.refund_details[stripe_id] = StoredRefund(payment_intent_id, amount, refund_id)
        self._refund_by_key[idempotency_key] = stripe_id
        self._lose_answer_if_down()
        return stripe_id

    async def find_refund(self, payment_intent_id: str, refund_id: str) -> str | None:
        self._refuse_if_down()
        for stripe_id, refund in self.refund_details.items():
            if (refund.payment_intent_id, refund.refund_id) == (payment_intent_id, refund_id):
                return stripe_id
        return None

    def refunded(self, payment_intent_id: str) -> int:
        """How much of a PaymentIntent has been refunded (what Stripe's dashboard shows)."""
        return sum(r.amount for r in self.refund_details.values() if r.payment_intent_id == payment_intent_id)

    async def _wait_at_gate(self) -> None:
        if self.confirm_gate is not None:
            self.confirms_waiting += 1
            await self.confirm_gate.wait()

    def forget_idempotency_keys(self) -> None:
        """What Stripe does to every key after 24 hours: a key sent again makes a new object."""
        self._by_key.clear()
        self._refund_by_key.clear()

    def _charge_card(self, intent: StoredIntent) -> ChargeOutcome:
        stored = self.cards.get(intent.payment_method_id)
        if stored is None or stored.customer_id != intent.customer_id:
            raise GatewayRefused(
                f"No such PaymentMethod on this customer: {intent.payment_method_id!r}.", "resource_missing"
            )
        if stored.card.charge_decline is not None:
            code, decline_code, message = stored.card.charge_decline
            return ChargeOutcome("failed", intent.id, code, message, decline_code)
        return ChargeOutcome("succeeded", intent.id)

    def _intent(self, payment_intent_id: str) -> StoredIntent:
        intent = self.intents.get(payment_intent_id)
        if intent is None:
            raise GatewayRefused(f"No such PaymentIntent: {payment_intent_id!r}.", "resource_missing")
        return intent

    def parse_webhook(self, payload: bytes, signature_header: str | None) -> WebhookEvent:
        return verify_webhook(payload, signature_header, self.webhook_secret, self.webhook_tolerance_seconds)

    async def close(self) -> None:
        return None

    def _refuse_if_down(self) -> None:
        if self.outage is Outage.REFUSED:
            raise GatewayUnavailable("The payment provider could not be reached; please try again later.")

    def _lose_answer_if_down(self, *, confirming: bool = False) -> None:
        if self.outage is Outage.ANSWER_LOST or (confirming and self.outage is Outage.CONFIRM_ANSWER_LOST):
            raise GatewayUnavailable("The payment provider did not answer in time; please try again later.")

    def _require_customer(self, customer_id: str) -> None:
        if customer_id not in self.customers:
            raise GatewayRefused(f"The payment provider has no customer {customer_id!r}.")

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_mem{self._instance}{next(self._ids):06d}"


if TYPE_CHECKING:
    _conforms: PaymentGateway = InMemoryGateway()
