"""The payment gateway: Stripe (official SDK) behind a small Protocol, an in-memory twin, webhooks."""

from payments.gateway import (
    CardDetails,
    ChargeOutcome,
    GatewayRefused,
    GatewayUnavailable,
    PaymentGateway,
    SetupIntentRef,
    WebhookEvent,
    WebhookRejected,
)

__all__ = [
    "CardDetails",
    "ChargeOutcome",
    "GatewayRefused",
    "GatewayUnavailable",
    "PaymentGateway",
    "SetupIntentRef",
    "WebhookEvent",
    "WebhookRejected",
]
