"""Stripe's webhook signature scheme: `Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "t.body">`.

The signature is checked on the raw bytes before anything decodes them, so an unsigned body is refused
whatever it contains (invalid UTF-8, a million brackets). The signing time must be within the
tolerance of now in both directions: a stale signature may be a replay, and one dated ahead of now
would stay replayable for as long as it is ahead. Every refusal is a WebhookRejected (a 400).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from typing import Any

from payments.gateway import WebhookEvent, WebhookRejected

# Stripe's own default: a signature older than five minutes is refused (replay protection).
DEFAULT_TOLERANCE_SECONDS = 300
SCHEME = "v1"
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")


def verify_webhook(
    payload: bytes,
    signature_header: str | None,
    secret: str,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> WebhookEvent:
    """Check the signature against the raw body, then parse the event. Raises WebhookRejected.

    `now` is Unix time; the wall clock by default, because Stripe signs with the real time (a sandbox
    clock moved ahead must not make every delivery look stale).
    """
    if not signature_header:
        raise WebhookRejected("The Stripe-Signature header is missing.")
    if not secret.strip():
        raise WebhookRejected(
            "No webhook secret is configured (STRIPE_WEBHOOK_SECRET); nothing can be verified."
        )
    timestamp, signatures = _parse_signature_header(signature_header)
    expected = _signature(payload, secret, timestamp)
    if not any(hmac.compare_digest(expected, signature) for signature in signatures):
        raise WebhookRejected("No signature in the Stripe-Signature header matches the body.")
    at = time.time() if now is None else now
    if abs(at - timestamp) > tolerance_seconds:
        raise WebhookRejected(
            f"The signature is dated more than {tolerance_seconds} seconds from now; it may be a replay."
        )
    return _parse_event(payload)


def sign_webhook(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The Stripe-Signature header Stripe would send for this body (for the in-memory gateway and tests)."""
    at = int(time.time()) if timestamp is None else timestamp
    return f"t={at},{SCHEME}={_signature(payload, secret, at)}"


def _signature(payload: bytes, secret: str, timestamp: int) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()


def _parse_signature_header(header: str) -> tuple[int, list[str]]:
    """The timestamp and the v1 signatures; other schemes (v0, test signatures) are ignored."""
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t":
            timestamps.append(value)
        elif key == SCHEME:
            signatures.append(value)
    if len(timestamps) != 1 or not _TIMESTAMP.fullmatch(timestamps[0]):
        raise WebhookRejected("The Stripe-Signature header has no valid timestamp.")
    # A well-formed signature is 64 lower-case hex digits; anything else can never match.
    well_formed = [signature for signature in signatures if _SIGNATURE.fullmatch(signature)]
    if not well_formed:
        raise WebhookRejected(f"The Stripe-Signature header has no {SCHEME} signature.")
    return int(timestamps[0]), well_formed


def _parse_event(payload: bytes) -> WebhookEvent:
    try:
        body: Any = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WebhookRejected("The webhook body is not UTF-8 JSON.") from error
    except RecursionError as error:
        raise WebhookRejected("The webhook body is nested too deeply to be an event.") from error
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
