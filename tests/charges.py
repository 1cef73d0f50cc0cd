"""Charging in one go, as a test playing Stripe's side (or a second system) does: collection itself
creates the PaymentIntent, stores its id, and only then confirms it."""

from __future__ import annotations

from payments.gateway import ChargeOutcome, PaymentGateway


async def charge(
    gateway: PaymentGateway,
    customer_id: str,
    payment_method_id: str,
    amount_minor: int,
    currency: str,
    invoice_id: str,
    idempotency_key: str,
) -> ChargeOutcome:
    """Create a PaymentIntent and confirm it at once; a decline is a failed outcome."""
    intent_id = await gateway.create_payment_intent(
        customer_id, payment_method_id, amount_minor, currency, invoice_id, idempotency_key
    )
    return await gateway.confirm_payment_intent(intent_id)
