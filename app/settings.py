"""Service settings, read from the environment once at start-up."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from domain.payments import (
    DEFAULT_IN_FLIGHT_MINUTES,
    DEFAULT_RETRY_DAYS,
    DEFAULT_REVOKE_AFTER_DAYS,
    DEFAULT_REVOKE_BATCH_SIZE,
    CollectionPolicy,
)
from domain.support import SupportContact
from persistence.database import DEFAULT_DATABASE_URL
from schema.limits import QueryLimits

# The public defaults that let tests and the demo talk to localstripe; anyone can sign with this secret.
DEFAULT_STRIPE_API_KEY = "sk_test_localstripe"
DEFAULT_STRIPE_WEBHOOK_SECRET = "whsec_localstripe"


class InsecureSettings(ValueError):
    """A setting left at a public default where that would let anyone forge payments."""


def _flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _origins(name: str) -> tuple[str, ...]:
    """A comma-separated list of browser origins (`https://portal.example.com`)."""
    return tuple(origin.strip() for origin in os.environ.get(name, "").split(",") if origin.strip())


def _fixed_answers(name: str) -> tuple[tuple[str, str], ...]:
    """`host=address,host=address`: host names answered without DNS (the answers are still checked)."""
    answers = []
    for item in os.environ.get(name, "").split(","):
        if item.strip():
            host, separator, address = item.partition("=")
            if not separator or not host.strip():
                raise ValueError(f"{name}: expected host=address pairs, got {item.strip()!r}")
            try:
                ipaddress.ip_address(address.strip())
            except ValueError as error:
                raise ValueError(f"{name}: {address.strip()!r} is not an IP address") from error
            answers.append((host.strip(), address.strip()))
    return tuple(answers)


def _choice(name: str, allowed: tuple[str, ...], default: str) -> str:
    """One of `allowed` (lower case; the variable's case does not matter)."""
    value = os.environ.get(name, default).strip().lower()
    if value not in allowed:
        raise ValueError(f"{name}={value!r}: expected one of {', '.join(allowed)}")
    return value


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    # Sandbox mode: the clock is settable by staff (advanceSandboxClock); the demo runs in it.
    sandbox: bool = False
    sandbox_start: datetime | None = None
    # What one GraphQL document may cost (checked before validation), and one HTTP request.
    query_limits: QueryLimits = field(default_factory=QueryLimits)
    max_body_bytes: int = 1_048_576
    request_timeout_seconds: float = 30.0
    # Young-generation GC threshold (CPython's default is 700); see app.http.tune_garbage_collection.
    gc_gen0_threshold: int = 50_000
    # Browser origins allowed to open websockets besides the server's own (`*`: any). Empty: same origin
    # only, other origins get a 403 handshake; non-browser clients send no Origin and are let in.
    websocket_origins: tuple[str, ...] = ()
    max_subscriptions_per_connection: int = 20
    # Origins whose browser pages may call the HTTP API (CORS). Empty: no CORS headers for anyone.
    cors_origins: tuple[str, ...] = ()
    # GraphiQL at GET /graphql for browsers (off in production if it should not be exposed).
    graphiql: bool = True
    # Prometheus metrics at /metrics.
    metrics: bool = True
    # `licensing serve` logs one JSON object per line ("json") or plain lines ("text").
    log_format: str = "json"
    log_level: str = "info"
    # validateLicense (no token): moving-window limits per client address and overall, per worker.
    license_checks_per_address: str = "60/minute"
    license_checks_overall: str = "2000/second"
    # PostgreSQL: how long the NOTIFY listener waits before reconnecting after losing its connection.
    feed_retry_seconds: float = 0.5
    # Stripe, or localstripe in tests and the demo (started by the test fixtures and `make run`).
    stripe_api_key: str = DEFAULT_STRIPE_API_KEY
    stripe_api_base: str = "http://127.0.0.1:8420"
    stripe_webhook_secret: str = DEFAULT_STRIPE_WEBHOOK_SECRET
    # Dunning: retry a past-due invoice on these days after it went past due; revoke licenses after.
    dunning_retry_days: tuple[int, ...] = DEFAULT_RETRY_DAYS
    dunning_revoke_after_days: int = DEFAULT_REVOKE_AFTER_DAYS
    dunning_revoke_batch_size: int = DEFAULT_REVOKE_BATCH_SIZE
    # A charge still pending after this long was abandoned by a crash and is re-sent with its key.
    charge_in_flight_minutes: int = DEFAULT_IN_FLIGHT_MINUTES
    # Partner webhooks: delivered by `licensing serve` (off: another runner calls the delivery use cases),
    # polled this often for retries coming due, each attempt bounded by the timeout; fixed answers for
    # endpoint host names (`host=address`, checked like DNS answers), e.g. for tests without DNS.
    webhook_delivery: bool = True
    webhook_poll_seconds: float = 5.0
    webhook_timeout_seconds: float = 10.0
    webhook_resolve: tuple[tuple[str, str], ...] = ()
    # Background jobs (app/jobs.py). PostgreSQL: also run a job worker inside each server process
    # (besides `licensing worker`). Periodic tasks (daily dunning): off for servers that must not run them.
    embedded_worker: bool = False
    periodic_jobs: bool = True
    # Prefixed to every job queue's name: deployments (or test apps) sharing one database each run
    # only their own jobs.
    job_queue_prefix: str = ""
    support: SupportContact = field(
        default_factory=lambda: SupportContact(
            message="Contact partner support, or reach out to your Agency & Pro manager.",
            email="partners@example.com",
            url="https://example.com/partners/support",
        )
    )

    def require_own_stripe_secrets(self) -> None:
        """Outside sandbox mode, refuse the public defaults: with the default webhook secret anyone can
        sign a "payment succeeded" event. Raises InsecureSettings naming the variable to set."""
        if self.sandbox:
            return
        for variable, value, default in (
            ("STRIPE_WEBHOOK_SECRET", self.stripe_webhook_secret, DEFAULT_STRIPE_WEBHOOK_SECRET),
            ("STRIPE_API_KEY", self.stripe_api_key, DEFAULT_STRIPE_API_KEY),
        ):
            if value == default:
                raise InsecureSettings(
                    f"{variable} is the public default {default!r}; set it to your own Stripe value "
                    "(or run in sandbox mode with LICENSING_SANDBOX=1)."
                )

    def collection_policy(self) -> CollectionPolicy:
        return CollectionPolicy(
            retry_days=self.dunning_retry_days,
            revoke_after_days=self.dunning_revoke_after_days,
            revoke_batch_size=self.dunning_revoke_batch_size,
            in_flight=timedelta(minutes=self.charge_in_flight_minutes),
        )

    @classmethod
    def from_env(cls) -> Settings:
        start = os.environ.get("LICENSING_SANDBOX_START")
        return cls(
            database_url=os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            sandbox=_flag("LICENSING_SANDBOX"),
            sandbox_start=datetime.fromisoformat(start) if start else None,
            query_limits=QueryLimits(
                max_depth=int(os.environ.get("LICENSING_MAX_QUERY_DEPTH", "10")),
                max_tokens=int(os.environ.get("LICENSING_MAX_QUERY_TOKENS", "2000")),
                max_aliases=int(os.environ.get("LICENSING_MAX_ALIASES", "15")),
                max_document_bytes=int(os.environ.get("LICENSING_MAX_QUERY_BYTES", "32768")),
                max_fields=int(os.environ.get("LICENSING_MAX_QUERY_FIELDS", "1000")),
            ),
            max_body_bytes=int(os.environ.get("LICENSING_MAX_BODY_BYTES", "1048576")),
            request_timeout_seconds=float(os.environ.get("LICENSING_REQUEST_TIMEOUT_SECONDS", "30")),
            gc_gen0_threshold=int(os.environ.get("LICENSING_GC_GEN0_THRESHOLD", "50000")),
            websocket_origins=_origins("LICENSING_WEBSOCKET_ORIGINS"),
            max_subscriptions_per_connection=int(os.environ.get("LICENSING_MAX_SUBSCRIPTIONS", "20")),
            cors_origins=_origins("LICENSING_CORS_ORIGINS"),
            graphiql=_flag("LICENSING_GRAPHIQL", default=True),
            metrics=_flag("LICENSING_METRICS", default=True),
            log_format=_choice("LICENSING_LOG_FORMAT", ("json", "text"), "json"),
            log_level=_choice("LICENSING_LOG_LEVEL", ("debug", "info", "warning", "error"), "info"),
            license_checks_per_address=os.environ.get("LICENSING_LICENSE_CHECKS_PER_ADDRESS", "60/minute"),
            license_checks_overall=os.environ.get("LICENSING_LICENSE_CHECKS_OVERALL", "2000/second"),
            feed_retry_seconds=float(os.environ.get("LICENSING_FEED_RETRY_SECONDS", "0.5")),
            stripe_api_key=os.environ.get("STRIPE_API_KEY") or DEFAULT_STRIPE_API_KEY,
            stripe_api_base=os.environ.get("STRIPE_API_BASE") or "http://127.0.0.1:8420",
            stripe_webhook_secret=os.environ.get("STRIPE_WEBHOOK_SECRET") or DEFAULT_STRIPE_WEBHOOK_SECRET,
            dunning_retry_days=tuple(
                int(day)
                for day in os.environ.get("LICENSING_DUNNING_RETRY_DAYS", "3,7,14").split(",")
                if day.strip()
            ),
            dunning_revoke_after_days=int(os.environ.get("LICENSING_DUNNING_REVOKE_AFTER_DAYS", "28")),
            dunning_revoke_batch_size=int(os.environ.get("LICENSING_DUNNING_REVOKE_BATCH_SIZE", "200")),
            charge_in_flight_minutes=int(os.environ.get("LICENSING_CHARGE_IN_FLIGHT_MINUTES", "15")),
            webhook_delivery=_flag("LICENSING_WEBHOOK_DELIVERY", default=True),
            webhook_poll_seconds=float(os.environ.get("LICENSING_WEBHOOK_POLL_SECONDS", "5")),
            webhook_timeout_seconds=float(os.environ.get("LICENSING_WEBHOOK_TIMEOUT_SECONDS", "10")),
            webhook_resolve=_fixed_answers("LICENSING_WEBHOOK_RESOLVE"),
            embedded_worker=_flag("LICENSING_EMBEDDED_WORKER"),
            periodic_jobs=_flag("LICENSING_PERIODIC_JOBS", default=True),
            job_queue_prefix=os.environ.get("LICENSING_JOB_QUEUE_PREFIX", ""),
            support=SupportContact(
                message=os.environ.get(
                    "LICENSING_SUPPORT_MESSAGE",
                    "Contact partner support, or reach out to your Agency & Pro manager.",
                ),
                email=os.environ.get("LICENSING_SUPPORT_EMAIL", "partners@example.com"),
                url=os.environ.get("LICENSING_SUPPORT_URL", "https://example.com/partners/support"),
            ),
        )
