"""Production signals: JSON logs carrying the request id, partner and operation; Prometheus metrics.

Every HTTP request and websocket gets a `RequestRecord` (in a context variable) that the GraphQL
extension fills in with the partner and the operation; every log line written while it runs carries
them, and one `request` line closes each HTTP request with its status and duration.

Metrics live in a registry per app (so tests can run many apps in one process) and are served at
/metrics in Prometheus' text format. With `--workers > 1` each worker answers for itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import orjson
from graphql import OperationDefinitionNode
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.extensions import SchemaExtension

from app.limits import request_id_for
from resolvers.observation import ChargeAnswer, Observer
from schema.fanout import FanoutStats

log = logging.getLogger("licensing.http")


@dataclass
class RequestRecord:
    """Who asked for what, for the log lines of one request (or of one websocket operation)."""

    request_id: str
    partner_id: str | None = None
    operation: str | None = None


CURRENT_REQUEST: ContextVar[RequestRecord | None] = ContextVar("licensing_request", default=None)
# Standard LogRecord attributes; anything else passed as `extra=` is written as a JSON field.
# (uvicorn adds `color_message`, its message with terminal colours.)
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
}


# orjson writes what json.dumps(default=str) would: instants, dataclasses and other objects as str().
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_NON_STR_KEYS


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the request's ids, and any `extra`."""

    # The last whole second formatted, and its text: a busy worker logs many lines per second.
    _second: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        current = CURRENT_REQUEST.get()
        if current is not None:
            entry.update(
                request_id=current.request_id, partner_id=current.partner_id, operation=current.operation
            )
        entry.update({key: value for key, value in vars(record).items() if key not in _RESERVED})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(entry, default=str, option=_ORJSON_OPTIONS).decode()
        except TypeError:  # e.g. an integer beyond 64 bits
            return json.dumps(entry, default=str)

    def _time(self, record: logging.LogRecord) -> str:
        """The instant in UTC to the millisecond, e.g. 2026-01-31T09:15:02.042+00:00."""
        second = int(record.created)
        known, text = self._second
        if known != second:
            text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = (second, text)
        return f"{text}.{int(record.msecs):03d}+00:00"


def logging_config(log_format: str, level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for the server (uvicorn's loggers included): JSON or plain text."""
    formatter: dict[str, Any] = (
        {"()": JsonLogFormatter}
        if log_format == "json"
        else {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "default"}},
        "root": {"handlers": ["default"], "level": level.upper()},
        # uvicorn's own lines go through the same handler; its access log is replaced by ours.
        "loggers": {
            "uvicorn": {"handlers": [], "propagate": True},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
    }


# Request latency buckets (seconds): most GraphQL reads take milliseconds, a month close seconds.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Feed lag buckets (seconds): a wake-up reaches a subscriber in about a millisecond when all is well.
FEED_LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class MetricOff:
    """Stands for every metric when metrics are off (LICENSING_METRICS=0): records nothing."""

    def labels(self, *_values: str) -> MetricOff:
        return self

    def observe(self, _value: float) -> None:
        pass

    def inc(self, _amount: float = 1) -> None:
        pass

    def set(self, _value: float) -> None:
        pass

    def track_inprogress(self) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()


class Metrics(Observer):
    """The app's Prometheus metrics (its own registry); the use cases' observer (resolvers.observation).

    Off (`enabled=False`), every metric is a MetricOff and the registry stays empty."""

    operation_seconds: Histogram
    errors: Counter
    http_seconds: Histogram
    open_websockets: Gauge
    charges: Counter
    feed_lag: Histogram
    month_close_partners: Gauge
    month_close_partners_done: Gauge

    def __init__(
        self,
        subscriptions_waiting: Callable[[], int],
        feed_listener_up: Callable[[], bool],
        *,
        enabled: bool = True,
    ) -> None:
        self.registry = CollectorRegistry()
        if not enabled:
            off: Any = MetricOff()
            for name in Metrics.__annotations__:
                setattr(self, name, off)
            return
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.registry)
        self.operation_seconds = Histogram(
            "licensing_graphql_operation_seconds",
            "GraphQL operations by type and root fields: time from parse to result.",
            ["type", "operation"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.errors = Counter(
            "licensing_graphql_errors",
            "Errors answered, by code: GraphQL errors' extensions.code and mutation payloads' errors.",
            ["code"],
            registry=self.registry,
        )
        self.http_seconds = Histogram(
            "licensing_http_request_seconds",
            "HTTP requests by route and status.",
            ["route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.open_websockets = Gauge(
            "licensing_open_websockets", "Websocket connections open now.", registry=self.registry
        )
        subscriptions = Gauge(
            "licensing_subscriptions_waiting",
            "Subscriptions of this worker waiting for their next event (open subscriptions, idle).",
            registry=self.registry,
        )
        subscriptions.set_function(subscriptions_waiting)
        listener = Gauge(
            "licensing_feed_listener_up",
            "1 while the PostgreSQL LISTEN connection that wakes subscriptions is up (always 1 on SQLite).",
            registry=self.registry,
        )
        listener.set_function(lambda: 1.0 if feed_listener_up() else 0.0)
        self.charges = Counter(
            "licensing_charges",
            "Charges answered (one per card tried on an invoice), by outcome: succeeded, declined (by the "
            "card's issuer), failed (Stripe refused the request), unknown (the answer was lost).",
            ["outcome"],
            registry=self.registry,
        )
        for answer in ChargeAnswer:  # every outcome is on the page from the start, at 0
            self.charges.labels(answer.value)
        self.feed_lag = Histogram(
            "licensing_feed_lag_seconds",
            "Events delivered to subscriptions: time from the wake-up their commit caused to the "
            "subscription taking the event.",
            buckets=FEED_LAG_BUCKETS,
            registry=self.registry,
        )
        self.month_close_partners = Gauge(
            "licensing_month_close_partners",
            "Partners in the current (or last) month close run by this worker.",
            registry=self.registry,
        )
        self.month_close_partners_done = Gauge(
            "licensing_month_close_partners_done",
            "Partners the current (or last) month close has finalized so far (closed, already closed, or "
            "not over in their zone yet); equal to licensing_month_close_partners when finalizing is done.",
            registry=self.registry,
        )

    def charge_answered(self, answer: ChargeAnswer) -> None:
        self.charges.labels(answer.value).inc()

    def feed_delivered(self, lag_seconds: float) -> None:
        self.feed_lag.observe(lag_seconds)

    def month_close_progress(self, done: int, total: int) -> None:
        self.month_close_partners.set(total)
        self.month_close_partners_done.set(done)

    def count_fanout(self, stats: FanoutStats) -> None:
        """Export how often subscription selections ran for an event, and how often a result was shared."""
        self.registry.register(FanoutCollector(stats))

    def endpoint(self, _request: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class FanoutCollector:
    """schema.fanout's counters, read at each scrape."""

    def __init__(self, stats: FanoutStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "licensing_subscription_executions",
            "Subscription selections executed for an event: once per distinct (document, variables, "
            "event, caller scope), however many subscribers share it.",
            value=self.stats.executions,
        )
        yield CounterMetricFamily(
            "licensing_subscription_shared_results",
            "Subscription results handed to a subscriber from another's execution (not run again).",
            value=self.stats.reused,
        )


def root_fields(execution_context: Any) -> str:
    """The operation's root fields (bounded by the schema, unlike client-chosen operation names)."""
    document = execution_context.graphql_document
    if document is None:
        return "invalid"
    names: set[str] = set()
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            selections = definition.selection_set.selections
            names |= {node.name.value for node in selections if hasattr(node, "name")}
    if not names:
        return "none"
    return ",".join(sorted(names)) if len(names) <= 3 else "several"


def operation_kind(execution_context: Any) -> str:
    """query, mutation or subscription; `invalid` for a document refused before it was understood."""
    if execution_context.graphql_document is None:
        return "invalid"
    try:
        return str(execution_context.operation_type.value)
    except RuntimeError:  # e.g. an operationName the document does not define
        return "invalid"


def error_codes(result: Any) -> Iterator[str]:
    """Codes of a result's GraphQL errors, and of its mutation payloads' `errors { code }`."""
    for error in result.errors or []:
        yield str((error.extensions or {}).get("code", "GRAPHQL_VALIDATION_FAILED"))
    for payload in (result.data or {}).values():
        if isinstance(payload, dict):
            for user_error in payload.get("errors") or []:
                if isinstance(user_error, dict) and "code" in user_error:
                    yield str(user_error["code"])


class OperationObserver(SchemaExtension):
    """Names the partner and operation for the logs; times queries and mutations; counts error codes.

    Listed first among the schema's extensions, so it sees errors after they were masked and coded.
    """

    def __init__(self, *, metrics: Metrics) -> None:
        self.metrics = metrics

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        context = self.execution_context.context
        record = CURRENT_REQUEST.get() or RequestRecord(getattr(context, "request_id", "unknown"))
        if getattr(context, "over_websocket", False):
            # Each websocket operation runs in its own task: give it its own record.
            record = RequestRecord(record.request_id)
            CURRENT_REQUEST.set(record)
        yield
        principal = getattr(context, "principal", None)
        record.partner_id = getattr(principal, "partner_id", None)
        fields = root_fields(self.execution_context)
        record.operation = self.execution_context.operation_name or fields
        kind = operation_kind(self.execution_context)
        result = self.execution_context.result
        if kind == "subscription" or result is None:
            return
        self.metrics.operation_seconds.labels(kind, fields).observe(time.perf_counter() - started)
        for code in error_codes(result):
            self.metrics.errors.labels(code).inc()


QUIET_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class RequestObserver:
    """ASGI middleware (inside RequestEdge, which assigns the request id): record, access log, metrics."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        record = RequestRecord(request_id_for(scope))
        token = CURRENT_REQUEST.set(record)
        try:
            if scope["type"] == "websocket":
                with self.metrics.open_websockets.track_inprogress():
                    await self.app(scope, receive, send)
            else:
                await self._http(scope, receive, send)
        finally:
            CURRENT_REQUEST.reset(token)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.http_seconds.labels(route, str(status)).observe(elapsed)
            # Probes and scrapes come every few seconds: their lines only at debug level.
            level = logging.DEBUG if scope["path"] in QUIET_PATHS else logging.INFO
            log.log(
                level,
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
