"""Service settings: one pydantic-settings model, read from the environment once at start-up.

Each setting is one field: its type, its environment variable and its default, written once:

    # What it is for (the README's settings table says it to operators).
    gc_gen0_threshold: int = env("LICENSING_GC_GEN0_THRESHOLD", 50_000, gt=0)

`Settings.from_env()` reads the environment and checks every variable at once: a malformed value, an
unknown choice or an origin that is not one is listed together in one `BadSettings`, naming each
variable (the `licensing` CLI prints them and exits 2 before anything starts). `Settings(...)` reads no
environment: it is the defaults with what it is given (tests and tools build settings so);
`settings.replace(...)` is a copy with some fields changed, checked again.

Types for values that are not plain: `Flag` (1/0, true/false, yes/no, on/off),
`Annotated[Lowercase, one_of(...)]` (one of some words), `CommaSeparated` (a tuple of strings),
`CommaSeparatedInts`, `Origins` (browser origins, or `*`), `RateLimit` (`limits` syntax, e.g.
`60/minute`), `HttpUrl`. Every value reaches its field as the environment's string, so a field
with a syntax of its own (`host=address,host=address`) takes a `field_validator(..., mode="before")`
that parses the string (and lets a value given in code through), and a rule of its own an `after`
one; both raise ValueError with a message for operators. Secrets (`env(..., secret=True)`) are never
echoed in an error nor shown in the settings' repr.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Annotated, Any, Self
from urllib.parse import urlsplit

from limits import parse as parse_rate_limit
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

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
# The drivers the service runs on (both async).
DATABASE_DRIVERS = ("sqlite+aiosqlite", "postgresql+asyncpg")


class InsecureSettings(ValueError):
    """A setting left at a public default where that would let anyone forge payments."""


class BadSettings(ValueError):
    """Environment variables that do not parse or break a rule: every one of them, each named."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems

    def __str__(self) -> str:
        if len(self.problems) == 1:
            return f"bad setting: {self.problems[0]}"
        listed = "".join(f"\n  {problem}" for problem in self.problems)
        return f"{len(self.problems)} bad settings:{listed}"


def env(variable: str, default: Any, *, secret: bool = False, **rules: Any) -> Any:
    """A field read from `variable`, with its default and pydantic's rules (`gt=0`, ...)."""
    return Field(
        default, validation_alias=variable, json_schema_extra={"secret": secret}, repr=not secret, **rules
    )


# -- value types --------------------------------------------------------------------------------


def _comma_separated(value: object) -> object:
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


def _lower(value: object) -> object:
    return value.strip().lower() if isinstance(value, str) else value


def one_of(*allowed: str) -> AfterValidator:
    """For `Annotated[Lowercase, one_of(...)]`: one of some words (the variable's case does not matter)."""

    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}")
        return value

    return AfterValidator(check)


def origin(value: str) -> str:
    """A browser origin as browsers send it (`https://portal.example.com`, `http://localhost:3000`)."""
    if value == "*":
        return value
    example = "scheme://host[:port], like https://portal.example.com"
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError(f"{value!r} is not an origin ({example})") from None
    if not parts.scheme or not parts.hostname or "://" not in value:
        raise ValueError(f"{value!r} is not an origin ({example}; did you mean https://{value}?)")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        bare = f"{parts.scheme}://{parts.netloc}"
        raise ValueError(
            f"{value!r} is not an origin: only {example}, nothing after it (did you mean {bare}?)"
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    scheme = parts.scheme.lower()
    if port is not None and port != {"http": 80, "https": 443}.get(scheme):
        host = f"{host}:{port}"
    return f"{scheme}://{host}"  # browsers send scheme and host in lower case, without a default port


def _origins(values: tuple[str, ...]) -> tuple[str, ...]:
    """Every origin checked (all the wrong ones named at once), as browsers send them, once each."""
    found, wrong = [], []
    for value in values:
        try:
            found.append(origin(value))
        except ValueError as error:
            wrong.append(str(error))
    if wrong:
        raise ValueError("; ".join(wrong))
    return tuple(dict.fromkeys(found))


def _rate_limit(value: str) -> str:
    try:
        parse_rate_limit(value)
    except ValueError:
        raise ValueError("expected a rate like 60/minute or 2000/second") from None
    return value


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError("expected an http:// or https:// URL")
    return value


def _in_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _fixed_answers(value: object) -> object:
    """`host=address,host=address`: host names answered without DNS (the answers are still checked)."""
    if not isinstance(value, str):
        return value
    answers = []
    for item in (item.strip() for item in value.split(",")):
        if not item:
            continue
        host, separator, address = item.partition("=")
        if not separator or not host.strip():
            raise ValueError(f"expected host=address pairs, got {item!r}")
        try:
            ipaddress.ip_address(address.strip())
        except ValueError:
            raise ValueError(f"{address.strip()!r} is not an IP address") from None
        answers.append((host.strip(), address.strip()))
    return tuple(answers)


Lowercase = Annotated[str, BeforeValidator(_lower)]
Flag = bool  # pydantic's booleans: 1/0, true/false, yes/no, on/off, t/f, y/n (any case)
CommaSeparated = Annotated[tuple[str, ...], BeforeValidator(_comma_separated)]
CommaSeparatedInts = Annotated[tuple[int, ...], BeforeValidator(_comma_separated)]
Origins = Annotated[CommaSeparated, AfterValidator(_origins)]
RateLimit = Annotated[str, AfterValidator(_rate_limit)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
FixedAnswers = Annotated[tuple[tuple[str, str], ...], BeforeValidator(_fixed_answers)]


# -- the settings -------------------------------------------------------------------------------


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        frozen=True,
        # Fields are given by name in code (`Settings(sandbox=True)`), by variable from the environment.
        validate_by_name=True,
        validate_by_alias=True,
        extra="forbid",
        case_sensitive=True,
        # An empty variable (`LICENSING_SANDBOX_START=`) is the default, as if unset.
        env_ignore_empty=True,
        # Every value reaches the field's validators as the string it is (no JSON for tuples and the like),
        # so a wrong one is listed with the others rather than stopping the reading.
        enable_decoding=False,
    )

    database_url: str = env("DATABASE_URL", DEFAULT_DATABASE_URL, secret=True)
    # Sandbox mode: the clock is settable by staff (advanceSandboxClock); the demo runs in it.
    sandbox: Flag = env("LICENSING_SANDBOX", False)
    sandbox_start: Annotated[AwareDatetime, AfterValidator(_in_utc)] | None = env(
        "LICENSING_SANDBOX_START", None
    )
    # What one GraphQL document may cost (checked before validation): see `query_limits`.
    max_query_depth: int = env("LICENSING_MAX_QUERY_DEPTH", QueryLimits.max_depth, ge=0)
    max_query_tokens: int = env("LICENSING_MAX_QUERY_TOKENS", QueryLimits.max_tokens, gt=0)
    max_aliases: int = env("LICENSING_MAX_ALIASES", QueryLimits.max_aliases, ge=0)
    max_query_bytes: int = env("LICENSING_MAX_QUERY_BYTES", QueryLimits.max_document_bytes, gt=0)
    max_query_fields: int = env("LICENSING_MAX_QUERY_FIELDS", QueryLimits.max_fields, gt=0)
    # What one HTTP request may cost.
    max_body_bytes: int = env("LICENSING_MAX_BODY_BYTES", 1_048_576, gt=0)
    request_timeout_seconds: float = env("LICENSING_REQUEST_TIMEOUT_SECONDS", 30.0, gt=0)
    # Young-generation GC threshold (CPython's default is 700); see app.http.tune_garbage_collection.
    gc_gen0_threshold: int = env("LICENSING_GC_GEN0_THRESHOLD", 50_000, gt=0)
    # Browser origins allowed to open websockets besides the server's own (`*`: any). Empty: same origin
    # only, other origins get a 403 handshake; non-browser clients send no Origin and are let in.
    websocket_origins: Origins = env("LICENSING_WEBSOCKET_ORIGINS", ())
    max_subscriptions_per_connection: int = env("LICENSING_MAX_SUBSCRIPTIONS", 20, gt=0)
    # Origins whose browser pages may call the HTTP API (CORS). Empty: no CORS headers for anyone.
    cors_origins: Origins = env("LICENSING_CORS_ORIGINS", ())
    # GraphiQL at GET /graphql for browsers (off in production if it should not be exposed).
    graphiql: Flag = env("LICENSING_GRAPHIQL", True)
    # Prometheus metrics at /metrics.
    metrics: Flag = env("LICENSING_METRICS", True)
    # OpenTelemetry traces of GraphQL operations (app.tracing): to OTLP/HTTP at `otlp_endpoint` if set,
    # else printed to stdout. Off: nothing of OpenTelemetry is even imported.
    otel_tracing: Flag = env("LICENSING_OTEL_TRACING", False)
    otlp_endpoint: HttpUrl | None = env("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    otel_service_name: str = env("OTEL_SERVICE_NAME", "partner-licensing")
    # `licensing serve` logs one JSON object per line ("json") or plain lines ("text").
    log_format: Annotated[Lowercase, one_of("json", "text")] = env("LICENSING_LOG_FORMAT", "json")
    log_level: Annotated[Lowercase, one_of("debug", "info", "warning", "error")] = env(
        "LICENSING_LOG_LEVEL", "info"
    )
    # validateLicense (no token): moving-window limits per client address and overall, per worker.
    license_checks_per_address: RateLimit = env("LICENSING_LICENSE_CHECKS_PER_ADDRESS", "60/minute")
    license_checks_overall: RateLimit = env("LICENSING_LICENSE_CHECKS_OVERALL", "2000/second")
    # PostgreSQL: how long the NOTIFY listener waits before reconnecting after losing its connection.
    feed_retry_seconds: float = env("LICENSING_FEED_RETRY_SECONDS", 0.5, gt=0)
    # Stripe, or localstripe in tests and the demo (started by the test fixtures and `make run`).
    stripe_api_key: str = env("STRIPE_API_KEY", DEFAULT_STRIPE_API_KEY, secret=True)
    stripe_api_base: HttpUrl = env("STRIPE_API_BASE", "http://127.0.0.1:8420")
    stripe_webhook_secret: str = env("STRIPE_WEBHOOK_SECRET", DEFAULT_STRIPE_WEBHOOK_SECRET, secret=True)
    # Dunning: retry a past-due invoice on these days after it went past due; revoke licenses after.
    dunning_retry_days: CommaSeparatedInts = env("LICENSING_DUNNING_RETRY_DAYS", DEFAULT_RETRY_DAYS)
    dunning_revoke_after_days: int = env(
        "LICENSING_DUNNING_REVOKE_AFTER_DAYS", DEFAULT_REVOKE_AFTER_DAYS, gt=0
    )
    dunning_revoke_batch_size: int = env(
        "LICENSING_DUNNING_REVOKE_BATCH_SIZE", DEFAULT_REVOKE_BATCH_SIZE, gt=0
    )
    # A charge still pending after this long was abandoned by a crash and is re-sent with its key.
    charge_in_flight_minutes: int = env("LICENSING_CHARGE_IN_FLIGHT_MINUTES", DEFAULT_IN_FLIGHT_MINUTES, gt=0)
    # Partner webhooks: delivered by `licensing serve` (off: another runner calls the delivery use cases),
    # polled this often for retries coming due, each attempt bounded by the timeout; fixed answers for
    # endpoint host names (`host=address`, checked like DNS answers), e.g. for tests without DNS.
    webhook_delivery: Flag = env("LICENSING_WEBHOOK_DELIVERY", True)
    webhook_poll_seconds: float = env("LICENSING_WEBHOOK_POLL_SECONDS", 5.0, gt=0)
    webhook_timeout_seconds: float = env("LICENSING_WEBHOOK_TIMEOUT_SECONDS", 10.0, gt=0)
    webhook_resolve: FixedAnswers = env("LICENSING_WEBHOOK_RESOLVE", ())
    # Background jobs (app/jobs.py). PostgreSQL: also run a job worker inside each server process
    # (besides `licensing worker`). Periodic tasks (daily dunning): off for servers that must not run them.
    embedded_worker: Flag = env("LICENSING_EMBEDDED_WORKER", False)
    periodic_jobs: Flag = env("LICENSING_PERIODIC_JOBS", True)
    # Prefixed to every job queue's name: deployments (or test apps) sharing one database each run
    # only their own jobs.
    job_queue_prefix: str = env("LICENSING_JOB_QUEUE_PREFIX", "")
    # What `support` answers: see `support`.
    support_message: str = env(
        "LICENSING_SUPPORT_MESSAGE", "Contact partner support, or reach out to your Agency & Pro manager."
    )
    support_email: str = env("LICENSING_SUPPORT_EMAIL", "partners@example.com")
    support_url: str = env("LICENSING_SUPPORT_URL", "https://example.com/partners/support")

    # -- rules of single fields -----------------------------------------------------------------

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        try:
            driver = make_url(value).drivername
        except (ArgumentError, ValueError):
            expected = "expected sqlite+aiosqlite:///… or postgresql+asyncpg://…"
            raise ValueError(f"not a database URL ({expected})") from None
        if driver not in DATABASE_DRIVERS:
            raise ValueError(f"driver {driver!r}: expected one of {', '.join(DATABASE_DRIVERS)}")
        return value

    @field_validator("dunning_retry_days")
    @classmethod
    def _retry_days(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if list(value) != sorted(set(value)) or any(day <= 0 for day in value):
            raise ValueError("expected positive days in increasing order, like 3,7,14")
        return value

    # -- built from several fields --------------------------------------------------------------

    @model_validator(mode="before")
    @classmethod
    def _spread_groups(cls, values: Any) -> Any:
        """`Settings(query_limits=QueryLimits(...), support=SupportContact(...))` sets their fields."""
        if not isinstance(values, dict) or not {"query_limits", "support"} & values.keys():
            return values
        values = dict(values)
        limits = values.pop("query_limits", None)
        if limits is not None:
            values.update(
                max_query_depth=limits.max_depth,
                max_query_tokens=limits.max_tokens,
                max_aliases=limits.max_aliases,
                max_query_bytes=limits.max_document_bytes,
                max_query_fields=limits.max_fields,
            )
        support = values.pop("support", None)
        if support is not None:
            values.update(
                support_message=support.message, support_email=support.email, support_url=support.url
            )
        return values

    @property
    def query_limits(self) -> QueryLimits:
        return QueryLimits(
            max_depth=self.max_query_depth,
            max_tokens=self.max_query_tokens,
            max_aliases=self.max_aliases,
            max_document_bytes=self.max_query_bytes,
            max_fields=self.max_query_fields,
        )

    @cached_property
    def support(self) -> SupportContact:
        # Made once: every request's (and open socket's) context refers to it.
        return SupportContact(message=self.support_message, email=self.support_email, url=self.support_url)

    def collection_policy(self) -> CollectionPolicy:
        return CollectionPolicy(
            retry_days=self.dunning_retry_days,
            revoke_after_days=self.dunning_revoke_after_days,
            revoke_batch_size=self.dunning_revoke_batch_size,
            in_flight=timedelta(minutes=self.charge_in_flight_minutes),
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

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """`Settings(...)` is only what it is given (and the defaults); `from_env` reads the environment."""
        return (init_settings,)

    @classmethod
    def from_env(cls) -> Self:
        """The settings from the environment; BadSettings lists every variable that is wrong."""
        given: dict[str, Any] = EnvSettingsSource(cls, case_sensitive=True, env_ignore_empty=True)()
        try:
            return cls(**given)
        except ValidationError as error:
            raise BadSettings(_problems(cls, error, given)) from None

    def replace(self, **changes: Any) -> Self:
        """A copy with `changes` (field names), checked like the original."""
        return type(self)(**{**self.model_dump(), **changes})


def variable_of(field_name: str) -> str:
    """The environment variable of a field."""
    alias = Settings.model_fields[field_name].validation_alias
    assert isinstance(alias, str)
    return alias


# Shorter words for pydantic's commonest complaints about an environment string.
_MESSAGES: dict[str, Callable[[dict[str, Any]], str]] = {
    "int_parsing": lambda _error: "expected a whole number",
    "int_from_float": lambda _error: "expected a whole number",
    "float_parsing": lambda _error: "expected a number",
    "bool_parsing": lambda _error: "expected 1 or 0 (also true/false, yes/no, on/off)",
    "datetime_from_date_parsing": lambda _error: "expected an ISO instant like 2026-07-01T09:00:00+00:00",
    "datetime_parsing": lambda _error: "expected an ISO instant like 2026-07-01T09:00:00+00:00",
    "timezone_aware": lambda _error: "expected an instant with its offset, like 2026-07-01T09:00:00+00:00",
}


def _problems(cls: type[Settings], error: ValidationError, given: dict[str, Any]) -> list[str]:
    """One line per variable: `NAME='value': what is wrong` (a secret's value is not shown)."""
    secret = {
        info.validation_alias
        for info in cls.model_fields.values()
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("secret")
    }
    problems: dict[str, list[str]] = {}
    for item in error.errors(include_url=False):
        variable = str(item["loc"][0]) if item["loc"] else "settings"
        message = _MESSAGES.get(item["type"], lambda e: str(e["msg"]).removeprefix("Value error, "))(item)
        if len(item["loc"]) > 1 and isinstance(item["loc"][1], int):
            message = f"item {item['loc'][1] + 1}: {message}"
        problems.setdefault(variable, []).append(message)
    lines = []
    for variable, messages in problems.items():
        raw = given.get(variable)
        shown = variable if raw is None or variable in secret else f"{variable}={raw!r}"
        lines.append(f"{shown}: {'; '.join(messages)}")
    return lines
