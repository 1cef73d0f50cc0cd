"""Optional OpenTelemetry traces of GraphQL operations (LICENSING_OTEL_TRACING=1).

Strawberry's OpenTelemetryExtension makes one span per operation ("GraphQL Query: <name>") with child
spans for parsing, validation and each field that has a resolver of its own. Spans go to an OTLP/HTTP
collector when OTEL_EXPORTER_OTLP_ENDPOINT is set (batched, to `<endpoint>/v1/traces`; the exporter's
other OTEL_EXPORTER_OTLP_* variables apply), else to stdout as JSON, one span at a time (for a
developer). The service is named by OTEL_SERVICE_NAME (default `partner-licensing`).

Nothing a caller sent as a value is recorded: resolver arguments are left out, and the string literals
of the document are replaced by "…" (they may hold transfer codes or license keys).

Only app.http imports this module, and only when tracing is on: with it off nothing of OpenTelemetry
is imported and the schema has no tracing extension, so it costs nothing.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Generator
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanProcessor,
)
from strawberry.extensions import LifecycleStep
from strawberry.extensions.tracing import OpenTelemetryExtension

from app.settings import Settings

# A GraphQL string literal: a block string, or a quoted one with its escapes.
STRING_LITERAL = re.compile(r'"""(?:[^"\\]|\\.|"(?!""))*"""|"(?:[^"\\\n]|\\.)*"')


def redacted(document: str) -> str:
    """The document with every string literal replaced by "…"."""
    return STRING_LITERAL.sub('"…"', document)


def span_processor(settings: Settings) -> SpanProcessor:
    if settings.otlp_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otlp_endpoint.rstrip("/") + "/v1/traces"
        return BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint))
    # One JSON object per line per span, as it ends.
    console = ConsoleSpanExporter(formatter=lambda span: span.to_json(indent=None) + "\n")
    return SimpleSpanProcessor(console)


def tracer_provider(settings: Settings) -> TracerProvider:
    """The app's own provider (the process-wide one is left alone); shut it down to flush spans."""
    provider = TracerProvider(resource=Resource.create({"service.name": settings.otel_service_name}))
    provider.add_span_processor(span_processor(settings))
    return provider


class GraphQLTracing(OpenTelemetryExtension):
    """Strawberry's extension, recording the request id and no values the caller sent."""

    def on_operation(self) -> Generator[None, None, None]:
        # Strawberry's hook starts the operation's span (with the whole document as `query`) and ends it.
        with contextlib.contextmanager(super().on_operation)():
            span = self._span_holder[LifecycleStep.OPERATION]
            if self.execution_context.query:
                span.set_attribute("query", redacted(self.execution_context.query))
            request_id = getattr(self.execution_context.context, "request_id", None)
            if request_id:
                span.set_attribute("licensing.request_id", request_id)
            yield


def _no_arguments(_arguments: dict[str, Any], _info: Any) -> dict[str, Any]:
    return {}


def tracing_extension(provider: TracerProvider) -> Callable[[], GraphQLTracing]:
    """A schema extension factory (one extension per operation) reporting to `provider`."""
    return lambda: GraphQLTracing(tracer_provider=provider, arg_filter=_no_arguments)
