"""Partner webhooks: which URLs may receive them, which events an endpoint wants, how a delivery is
signed, and when a failed one is tried again (docs/webhooks.md).

Pure rules: no sockets, no clock. The use cases resolve host names and send; this module says whether an
address may be reached and what the receiver can verify.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import SplitResult, urlsplit

from domain.errors import DomainError, ErrorCode
from domain.events import DomainEvent

SIGNATURE_HEADER = "Licensing-Signature"
SECRET_PREFIX = "whsec_"
MAX_URL_LENGTH = 2048
MAX_ENDPOINTS_PER_PARTNER = 16
# The streams of a partner's event feed; a filter names streams (`invoice`) or events (`invoice.finalize`).
FEED_STREAMS = frozenset(
    {"license", "standing", "invoice", "payment_method", "api_token", "webhook_endpoint"}
)
EVERY_EVENT = "*"


class EndpointStatus(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"


class DeliveryStatus(StrEnum):
    PENDING = "pending"  # waiting for its (next) attempt, or for the events before it
    SUCCEEDED = "succeeded"  # the receiver answered 2xx
    FAILED = "failed"  # retried for the whole window without a 2xx: given up


class EndpointChange(StrEnum):
    """What the partner's feed says happened to one of its endpoints (stream `webhook_endpoint`)."""

    CREATED = "created"
    SECRET_ROTATED = "secret_rotated"
    DISABLED = "disabled"
    DELETED = "deleted"


@dataclass(frozen=True)
class WebhookEndpoint:
    id: str
    partner_id: str
    url: str
    events: tuple[str, ...]
    status: EndpointStatus
    created_at: datetime
    disabled_at: datetime | None = None
    disabled_reason: str | None = None

    def wants(self, stream: str, action: str) -> bool:
        """Whether an event of the feed matches this endpoint's filter."""
        return any(wanted in (EVERY_EVENT, stream, f"{stream}.{action}") for wanted in self.events)


def endpoint_event(
    endpoint: WebhookEndpoint, change: EndpointChange, at: datetime, **details: str
) -> DomainEvent:
    """The event of a change to an endpoint, on its partner's feed (never the secret)."""
    payload = {"url": endpoint.url, **details}
    return DomainEvent(
        endpoint.partner_id, "webhook_endpoint", endpoint.id, change.value, at, payload=payload
    )


# -- the event filter -------------------------------------------------------------------------------


def event_filter(events: list[str]) -> tuple[str, ...]:
    """The endpoint's filter: `*`, stream names, or `stream.action`; duplicates dropped, order kept."""
    if not 1 <= len(events) <= 50:
        raise DomainError(ErrorCode.INVALID_INPUT, "Name 1 to 50 events, or '*' for every event.", "events")
    kept: list[str] = []
    for wanted in (event.strip() for event in events):
        stream, _, action = wanted.partition(".")
        known = wanted == EVERY_EVENT or (
            stream in FEED_STREAMS
            and (not action or (action.replace("_", "").isalnum() and len(action) <= 32))
        )
        if not known:
            streams = ", ".join(sorted(FEED_STREAMS))
            raise DomainError(
                ErrorCode.INVALID_INPUT,
                f"Unknown event {wanted[:40]!r}: use '*', a stream ({streams}) or 'stream.action'.",
                "events",
            )
        if wanted not in kept:
            kept.append(wanted)
    return tuple(kept)


# -- where a webhook may go --------------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointUrl:
    """A checked endpoint URL: where to connect (host, port) and what to send as Host and SNI."""

    url: str
    scheme: str
    host: str  # lower-case name or IP literal, without brackets
    port: int
    target: str  # path and query, as sent in the request line

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def literal_address(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None


def endpoint_url(url: str, *, sandbox: bool) -> EndpointUrl:
    """Parse and check an endpoint URL: https only (sandbox mode: also http, to loopback addresses only),
    no credentials, no fragment. Where the host points is checked after resolving (`refused_address`)."""

    def refuse(reason: str) -> DomainError:
        return DomainError(ErrorCode.INVALID_INPUT, f"The endpoint URL {reason}.", "url")

    if len(url) > MAX_URL_LENGTH or not url.isprintable() or any(c.isspace() for c in url):
        raise refuse(f"must be at most {MAX_URL_LENGTH} printable characters without spaces")
    try:
        parts: SplitResult = urlsplit(url)
        port = parts.port
        host = (parts.hostname or "").rstrip(".")
    except ValueError as error:
        raise refuse("is not a valid URL") from error
    if parts.scheme not in ("https", "http"):
        raise refuse("must start with https://")
    if not host:
        raise refuse("has no host")
    if port == 0:
        raise refuse("has port 0")
    if parts.username is not None or parts.password is not None:
        raise refuse("may not carry credentials")
    if parts.fragment or url.endswith("#"):
        raise refuse("may not have a fragment")
    checked = EndpointUrl(
        url=url,
        scheme=parts.scheme,
        host=host.lower(),
        port=port or (443 if parts.scheme == "https" else 80),
        target=(parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
    )
    if parts.scheme == "http" and not sandbox:
        raise refuse("must use https (sandbox mode also allows http to 127.0.0.1)")
    if checked.literal_address is None and not _is_host_name(checked.host):
        raise refuse("has an invalid host name")
    return checked


def refused_address(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, sandbox: bool, plain_http: bool = False
) -> str | None:
    """Why a webhook may not connect to `address` (None: it may). Only public unicast addresses pass;
    sandbox mode also lets loopback through, for tests and the demo, and plain http only to loopback."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            reason = refused_address(embedded, sandbox=sandbox, plain_http=plain_http)
            return None if reason is None else f"{reason} (inside the IPv6 address {address})"
    if sandbox and _is_loopback(address):
        return None
    if plain_http:
        return f"{address} is not a loopback address, and http:// goes to loopback only (sandbox mode)"
    for test, what in (
        (address.is_loopback, "a loopback address"),
        (address.is_link_local, "a link-local address (cloud metadata lives there)"),
        (address.is_multicast, "a multicast address"),
        (address.is_unspecified, "an unspecified address"),
        (address.is_private, "a private address"),
        (address.is_reserved, "a reserved address"),
    ):
        if test:
            return f"{address} is {what}"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return f"{address} is a shared (carrier-grade NAT) address"
    if not address.is_global:
        return f"{address} is not a public address"
    return None


_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped ::ffff:a.b.c.d, 6to4, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _is_loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> bool:
    return address is not None and address.is_loopback


def _is_host_name(host: str) -> bool:
    labels = host.split(".")
    return len(host) <= 253 and all(
        0 < len(label) <= 63 and label.replace("-", "").isalnum() and label.isascii() for label in labels
    )


# -- signatures --------------------------------------------------------------------------------------


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`."""
    return f"t={timestamp},v1={_digest(secret, timestamp, body)}"


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signed_by(secret: str, header: str, body: bytes, *, now: int, tolerance_seconds: int = 300) -> bool:
    """What a receiver checks (docs/webhooks.md has the same steps as a snippet): a `v1` signature of
    this body by this secret, made within `tolerance_seconds` of `now`."""
    fields = [item.partition("=") for item in header.split(",")]
    timestamps = [value for key, _, value in fields if key.strip() == "t"]
    if len(timestamps) != 1 or not timestamps[0].isdigit():
        return False
    timestamp = int(timestamps[0])
    if abs(now - timestamp) > tolerance_seconds:
        return False
    expected = _digest(secret, timestamp, body)
    return any(key.strip() == "v1" and hmac.compare_digest(value, expected) for key, _, value in fields)


# -- retries -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff from the first attempt: 1 min, 2, 4, … at most 8 h apart, for 3 days; an event
    still not delivered then is given up and its endpoint disabled."""

    first_delay: timedelta = timedelta(minutes=1)
    max_delay: timedelta = timedelta(hours=8)
    window: timedelta = timedelta(days=3)

    def next_attempt(self, first_attempt_at: datetime, failures: int, now: datetime) -> datetime | None:
        """When to try again after `failures` failed attempts; None when the window is over."""
        delay = min(self.first_delay * 2 ** min(failures - 1, 30), self.max_delay)
        deadline = first_attempt_at + self.window
        if now >= deadline:
            return None
        return min(now + delay, deadline)
