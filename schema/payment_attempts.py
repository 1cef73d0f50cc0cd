"""Charge attempts in the API: `Invoice.paymentAttempts`, so a partner can see why a charge failed."""

from __future__ import annotations

from datetime import datetime

import strawberry

from domain.payments import AttemptStatus
from resolvers.invoice_payments import ChargeAttempt
from schema.enums import described_enum

described_enum(
    AttemptStatus,
    name="PaymentAttemptStatus",
    description="PENDING (being charged), SUCCEEDED, FAILED (declined or refused), UNKNOWN (answer lost).",
    values={
        AttemptStatus.PENDING: "Being charged: Stripe has not answered yet.",
        AttemptStatus.SUCCEEDED: "The card was charged.",
        AttemptStatus.FAILED: "Stripe answered no: declined, or the request was refused (see the codes).",
        AttemptStatus.UNKNOWN: "Stripe's answer was lost (timeout); it is resumed, never charged twice.",
    },
)


@strawberry.type(description="One charge of an invoice on one card, and what the card issuer answered.")
class PaymentAttempt:
    number: int = strawberry.field(description="1 for the invoice's first charge, then 2, 3, ...")
    at: datetime = strawberry.field(description="When it was answered (or last sent, while unanswered).")
    card_brand: str | None = strawberry.field(description="The card's brand, e.g. visa.")
    card_last4: str | None = strawberry.field(description="The card's last four digits.")
    status: AttemptStatus = strawberry.field(description="Where the charge stands.")
    failure_code: str | None = strawberry.field(description="Stripe's error code when it failed.")
    decline_code: str | None = strawberry.field(
        description="The issuer's reason when the card was declined, e.g. insufficient_funds."
    )
    message: str | None = strawberry.field(description="Stripe's explanation of the failure, for people.")

    @classmethod
    def from_domain(cls, charge: ChargeAttempt) -> PaymentAttempt:
        attempt, card = charge.attempt, charge.card
        return cls(
            number=attempt.number,
            at=attempt.completed_at or attempt.sent_at or attempt.created_at,
            card_brand=None if card is None else card.brand,
            card_last4=None if card is None else card.last4,
            status=attempt.status,
            failure_code=attempt.failure_code,
            decline_code=attempt.decline_code,
            message=attempt.failure_message,
        )
