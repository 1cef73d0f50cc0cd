"""The payment gateway as the use cases see it: a small Protocol, its values and its failures.

Three kinds of failure, kept apart on purpose:
- a card decline while charging is an answer, not an exception: `ChargeOutcome(status="failed")`;
- bad input (unknown card, a card on file elsewhere, a card declined when verified) is a `DomainError`;
- the provider could not be reached or failed on its side is `GatewayUnavailable`: nothing is known to
  have changed, and the same call may be retried later (with the same idempotency key for a charge).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from domain.errors import DomainError, ErrorCode

ChargeStatus = Literal["succeeded", "failed"]


@dataclass(frozen=True)
class SetupIntentRef:
    """What the browser needs to collect a card: the SetupIntent and its client secret."""

    id: str
    client_secret: str


@dataclass(frozen=True)
class CardDetails:
    """A card on file as the provider knows it. `id` is the provider's id to store and charge."""

    id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True)
class ChargeOutcome:
    """The provider's answer to one charge attempt."""

    status: ChargeStatus
    payment_intent_id: str | None
    failure_code: str | None = None
    failure_message: str | None = None
    # The issuer's reason, when the provider gives one (e.g. "insufficient_funds").
    decline_code: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"


@dataclass(frozen=True)
class WebhookEvent:
    """A verified provider event: its id (for deduplication), type and the object it is about."""

    id: str
    type: str
    created: int
    object: dict[str, Any] = field(default_factory=dict)

    @property
    def amount(self) -> int | None:
        value = self.object.get("amount")
        return value if isinstance(value, int) else None

    @property
    def currency(self) -> str | None:
        value = self.object.get("currency")
        return value.lower() if isinstance(value, str) else None

    @property
    def customer_id(self) -> str | None:
        value = self.object.get("customer")
        if isinstance(value, dict):
            value = value.get("id")
        return value if isinstance(value, str) else None

    @property
    def object_id(self) -> str | None:
        value = self.object.get("id")
        return value if isinstance(value, str) else None

    @property
    def invoice_id(self) -> str | None:
        """Our invoice id, carried in a PaymentIntent's metadata by `charge`."""
        metadata = self.object.get("metadata") or {}
        value = metadata.get("invoice_id") if isinstance(metadata, dict) else None
        return value if isinstance(value, str) else None


class GatewayUnavailable(DomainError):
    """The provider could not be reached, timed out, or failed on its side; retry later."""

    def __init__(self, message: str = "The payment provider is unavailable; please try again later.") -> None:
        super().__init__(ErrorCode.PAYMENT_GATEWAY_UNAVAILABLE, message)


class GatewayRefused(Exception):
    """The provider refused a request we should not have made (an unknown customer, a reused key, a
    card detached behind our back, a refund of a failed payment): an answer, not an outage, so it is
    recorded with its reason and never re-sent. Not the user's doing, so it is not a DomainError."""

    def __init__(self, message: str, code: str = "gateway_refused") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class WebhookRejected(Exception):
    """A webhook whose signature is missing, wrong or stale, or whose body is not an event."""


def payment_method_not_found(payment_method_id: str) -> DomainError:
    return DomainError(
        ErrorCode.PAYMENT_METHOD_NOT_FOUND,
        f"No payment method {payment_method_id!r} is on file with the payment provider.",
        field="paymentMethodId",
    )


def payment_method_not_usable(reason: str) -> DomainError:
    return DomainError(ErrorCode.PAYMENT_METHOD_NOT_USABLE, reason, field="paymentMethodId")


def payment_method_declined(message: str) -> DomainError:
    return DomainError(
        ErrorCode.PAYMENT_METHOD_DECLINED,
        f"The card was declined when it was verified: {message}",
        field="paymentMethodId",
    )


class PaymentGateway(Protocol):
    """What billing needs from a payment provider. Amounts are integers in the currency's minor unit."""

    async def create_customer(self, partner_id: str, name: str) -> str:
        """Create the provider's customer for a partner; returns its id (stored by the caller)."""
        ...

    async def create_setup_intent(self, customer_id: str) -> SetupIntentRef:
        """Start collecting a card for off-session use; the browser confirms it with the secret."""
        ...

    async def attach_payment_method(self, customer_id: str, payment_method_id: str) -> CardDetails:
        """Verify the card exists, is a card and is not someone else's, attach it, return its details."""
        ...

    async def detach_payment_method(self, customer_id: str, payment_method_id: str) -> None:
        """Remove a card from the customer; PAYMENT_METHOD_NOT_FOUND if it is not on file there."""
        ...

    async def set_default_payment_method(self, customer_id: str, payment_method_id: str | None) -> None:
        """Set (or clear, with None) the customer's invoice default card."""
        ...

    async def create_payment_intent(
        self,
        customer_id: str,
        payment_method_id: str,
        amount_minor: int,
        currency: str,
        invoice_id: str,
        idempotency_key: str,
    ) -> str:
        """Create an unconfirmed PaymentIntent for an invoice under a stable key; returns its id.

        No money moves until it is confirmed, so the caller stores the id before confirming it.
        """
        ...

    async def confirm_payment_intent(self, payment_intent_id: str) -> ChargeOutcome:
        """Confirm (charge) a PaymentIntent off-session; a decline is a failed outcome, not an exception."""
        ...

    async def resume_payment_intent(self, payment_intent_id: str) -> ChargeOutcome:
        """What became of a PaymentIntent whose answer was lost: retrieve it, confirm it only if it still
        needs confirming. GatewayUnavailable while it is still processing."""
        ...

    async def refund_payment(
        self,
        payment_intent_id: str,
        idempotency_key: str,
        *,
        amount_minor: int | None = None,
        refund_id: str | None = None,
    ) -> str:
        """Refund a succeeded PaymentIntent, in full or `amount_minor` of it; returns the provider's refund
        id. `refund_id` (ours) goes into the refund's metadata, so `find_refund` can find it again.
        GatewayRefused if refused."""
        ...

    async def find_refund(self, payment_intent_id: str, refund_id: str) -> str | None:
        """The provider's id of the refund of this PaymentIntent carrying our `refund_id`, if it exists:
        how a refund whose answer was lost is found again once the provider forgot its idempotency key."""
        ...

    def parse_webhook(self, payload: bytes, signature_header: str | None) -> WebhookEvent:
        """Verify the signature on the raw body and parse the event; raises WebhookRejected."""
        ...

    async def close(self) -> None:
        """Release connections; called on shutdown."""
        ...
