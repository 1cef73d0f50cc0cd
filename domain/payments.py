"""Payment methods, charge attempts and dunning: the rules, without I/O (see the README).

A partner's cards are charged primary first, then the others in the order they were added. Every
charge is an attempt row with a stable idempotency key, written before the provider is called, so a
crash or an outage can never make us charge an invoice twice. Dunning retries a past-due invoice on
fixed days after it went past due and, after a longer grace, revokes the partner's active licenses.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from domain.errors import DomainError, ErrorCode
from domain.events import DomainEvent

DEFAULT_RETRY_DAYS = (3, 7, 14)
DEFAULT_REVOKE_AFTER_DAYS = 28
# A pending attempt older than this was left by a crash: it is re-sent with its own idempotency key.
DEFAULT_IN_FLIGHT_MINUTES = 15
# Stripe's object ids (`pm_…`) and ours (`card_…`) are at most 255 letters, digits and underscores.
MAX_PAYMENT_METHOD_ID_LENGTH = 255
_PAYMENT_METHOD_ID = re.compile(r"[A-Za-z0-9_]+")
# Non-payment revocation revokes this many licenses per transaction, so the partner's lock is brief.
DEFAULT_REVOKE_BATCH_SIZE = 200


@dataclass(frozen=True)
class PaymentMethod:
    """A card on file, mirrored from the provider. `stripe_id` is the id the API and Stripe use."""

    id: str
    partner_id: str
    stripe_id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    is_primary: bool
    position: int  # order of addition within the partner
    created_at: datetime
    removed_at: datetime | None = None

    @property
    def is_active(self) -> bool:
        return self.removed_at is None


class CardChange(StrEnum):
    """What happened to a card on file: each is a "payment_method" event."""

    ADDED = "added"
    MADE_PRIMARY = "made_primary"
    REMOVED = "removed"


def card_event(method: PaymentMethod, change: CardChange, at: datetime) -> DomainEvent:
    """The event of a card change; the subject is the card's id as the API names it (Stripe's)."""
    payload = {"brand": method.brand, "last4": method.last4}
    return DomainEvent(
        method.partner_id, "payment_method", method.stripe_id, change.value, at, payload=payload
    )


class AttemptStatus(StrEnum):
    PENDING = "pending"  # stored, the provider is being called (or the process died meanwhile)
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the provider answered: declined, or refused the request (with its reason)
    # Only a lost answer is unknown (the provider could not be reached, or timed out): it is resumed by
    # its PaymentIntent id, or re-created with its key if even that id never came back.
    UNKNOWN = "unknown"


class ChargeTrigger(StrEnum):
    """Why an invoice was charged."""

    MONTH_CLOSE = "month_close"
    PAY_NOW = "pay_now"
    DUNNING = "dunning"


@dataclass(frozen=True)
class PaymentAttempt:
    """One charge of one invoice on one card; at most one succeeds per invoice."""

    id: str
    invoice_id: str
    partner_id: str
    payment_method_id: str
    number: int
    idempotency_key: str
    status: AttemptStatus
    trigger: ChargeTrigger
    amount: int
    currency: str
    created_at: datetime
    payment_intent_id: str | None = None
    failure_code: str | None = None
    completed_at: datetime | None = None
    # When it was last sent to the provider (re-sending refreshes it, so it counts as in flight again).
    sent_at: datetime | None = None
    decline_code: str | None = None  # the issuer's reason, e.g. "insufficient_funds"
    failure_message: str | None = None  # the provider's explanation, shown to the partner

    @property
    def is_unresolved(self) -> bool:
        """Sent (or about to be) without a known answer: only the provider can say what happened."""
        return self.status in (AttemptStatus.PENDING, AttemptStatus.UNKNOWN)


def validate_payment_method_id(payment_method_id: str) -> str:
    """Refuse an id no card can have before it reaches the provider (INVALID_INPUT, not echoed)."""
    if len(payment_method_id) > MAX_PAYMENT_METHOD_ID_LENGTH or not _PAYMENT_METHOD_ID.fullmatch(
        payment_method_id
    ):
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"A payment method id (pm_… from Stripe.js, or a card's id) is 1 to "
            f"{MAX_PAYMENT_METHOD_ID_LENGTH} letters, digits and underscores.",
            field="paymentMethodId",
        )
    return payment_method_id


def attempt_idempotency_key(invoice_id: str, number: int) -> str:
    """Stable per attempt: re-sending an attempt whose answer was lost reuses it, so Stripe charges once."""
    return f"invoice-{invoice_id}-attempt-{number}"


def charge_order(methods: Sequence[PaymentMethod], chosen: str | None = None) -> list[PaymentMethod]:
    """The cards to try, in order: the chosen one only, or primary first then by when they were added."""
    active = [method for method in methods if method.is_active]
    if chosen is not None:
        picked = [method for method in active if chosen in (method.stripe_id, method.id)]
        if not picked:
            raise DomainError(
                ErrorCode.PAYMENT_METHOD_NOT_FOUND,
                f"No payment method {chosen!r} is on file.",
                field="paymentMethodId",
            )
        return picked
    return sorted(active, key=lambda m: (not m.is_primary, m.position))


def next_primary(methods: Sequence[PaymentMethod], removed_id: str) -> PaymentMethod | None:
    """The card promoted when the primary `removed_id` goes: the earliest added of those left."""
    left = [m for m in methods if m.is_active and m.id != removed_id]
    return min(left, key=lambda m: m.position, default=None)


def is_stale_pending(attempt: PaymentAttempt, now: datetime, in_flight: timedelta) -> bool:
    """A pending attempt sent this long ago was abandoned by a crash, not in flight."""
    sent = attempt.sent_at or attempt.created_at
    return attempt.status is AttemptStatus.PENDING and now - sent >= in_flight


class DunningStep(StrEnum):
    WAIT = "wait"
    RETRY = "retry"
    REVOKE = "revoke"


@dataclass(frozen=True)
class CollectionPolicy:
    """Settings of collection: retry days after the invoice went past due, and when licenses go."""

    retry_days: tuple[int, ...] = DEFAULT_RETRY_DAYS
    revoke_after_days: int = DEFAULT_REVOKE_AFTER_DAYS
    in_flight: timedelta = field(default_factory=lambda: timedelta(minutes=DEFAULT_IN_FLIGHT_MINUTES))
    revoke_batch_size: int = DEFAULT_REVOKE_BATCH_SIZE

    def __post_init__(self) -> None:
        if list(self.retry_days) != sorted(set(self.retry_days)) or any(d <= 0 for d in self.retry_days):
            raise ValueError("retry days must be positive and increasing")
        if self.revoke_after_days <= 0:
            raise ValueError("revoke_after_days must be positive")
        if self.revoke_batch_size <= 0:
            raise ValueError("revoke_batch_size must be positive")


@dataclass(frozen=True)
class DunningDecision:
    step: DunningStep
    # How many scheduled retries are used up once this step is done (catch-up counts skipped days once).
    retries_done: int


def dunning_decision(
    past_due_since: datetime,
    now: datetime,
    *,
    retries_done: int,
    licenses_revoked: bool,
    policy: CollectionPolicy,
) -> DunningDecision:
    """What dunning does for a past-due invoice now. Days are whole 24-hour days since it went past due.

    A run that missed several retry days retries once, not once per missed day.
    """
    days = (now - past_due_since) // timedelta(days=1)
    if days >= policy.revoke_after_days and not licenses_revoked:
        return DunningDecision(DunningStep.REVOKE, retries_done)
    due = sum(1 for day in policy.retry_days if days >= day)
    if due > retries_done:
        return DunningDecision(DunningStep.RETRY, due)
    return DunningDecision(DunningStep.WAIT, retries_done)
