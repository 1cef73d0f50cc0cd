"""Stripe's webhook signature scheme: `Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">`."""

from __future__ import annotations

import json
import time

import stripe

from payments.gateway import WebhookEvent, WebhookRejected

# Stripe's own default: a signature older than five minutes is refused (replay protection).
DEFAULT_TOLERANCE_SECONDS = 300


def verify_webhook(
    payload: bytes,
    signature_header: str | None,
    secret: str,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> WebhookEvent:
    """Check the signature against the raw body, then parse the event. Raises WebhookRejected."""
    if not signature_header:
        raise WebhookRejected("The Stripe-Signature header is missing.")
    try:
        stripe.WebhookSignature.verify_header(payload, signature_header, secret, tolerance_seconds)
    except stripe.SignatureVerificationError as error:
        raise WebhookRejected(str(error)) from error
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WebhookRejected("The webhook body is not JSON.") from error
    if not isinstance(body, dict):
        raise WebhookRejected("The webhook body is not an event.")
    event_id, event_type = body.get("id"), body.get("type")
    data = body.get("data")
    subject = data.get("object") if isinstance(data, dict) else None
    if not isinstance(event_id, str) or not isinstance(event_type, str) or not isinstance(subject, dict):
        raise WebhookRejected("The webhook body is not an event.")
    created = body.get("created")
    return WebhookEvent(
        id=event_id, type=event_type, created=created if isinstance(created, int) else 0, object=subject
    )


def sign_webhook(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The Stripe-Signature header Stripe would send for this body (for the in-memory gateway and tests)."""
    at = int(time.time()) if timestamp is None else timestamp
    return str(stripe.WebhookSignature.generate_signature_header(payload.decode("utf-8"), secret, at))
