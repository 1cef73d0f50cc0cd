"""The Starlette application: /graphql (HTTP, GraphiQL, websockets), /webhooks/stripe, invoice CSV and PDF
downloads, probes, metrics."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import orjson
from cross_web import HTTPException
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError, MissingQueryError
from strawberry.extensions import SchemaExtension
from strawberry.http import process_result
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.graphql import OperationType
from strawberry.types.unset import UNSET, UnsetType

from app.audit_export import audit_filter
from app.graphiql import GraphiQLPage
from app.invoice_pdf import render_invoice_pdf
from app.jobs import JobServices, job_engine
from app.limits import RequestEdge, error_body, json_depth_exceeds, request_id_for
from app.live_tail import PartnerTails
from app.observability import Metrics, OperationObserver, RequestObserver
from app.readiness import Readiness, StripeProbe
from app.settings import Settings
from app.sockets import TokenBoundHandler, TokenWatches
from app.webhook_dispatch import WebhookDispatcher, webhook_delivery
from domain.clock import Clock, SettableClock, SystemClock
from domain.errors import DomainError, ErrorCode
from payments.gateway import PaymentGateway, WebhookRejected
from payments.stripe_gateway import StripeGateway
from persistence.database import Database
from persistence.feed import PostgresListener
from persistence.tokens import TOKEN_SIGNAL_PREFIX
from resolvers.audit_log import audit_log_csv as export_audit_log
from resolvers.context import RequestContext, SharedReads
from resolvers.invoices import invoice_day_lines_csv, invoice_document
from resolvers.license_checks import CheckLimits
from resolvers.observation import NO_OBSERVER, Observer
from resolvers.stripe_webhooks import apply_webhook
from resolvers.tokens import authenticate, identify_caller
from resolvers.webhook_sending import AddressLookup
from schema.build import build_schema
from schema.fanout import fanout_stats

log = logging.getLogger("licensing.http")


class Services:
    """Everything a request needs that outlives it."""

    def __init__(self, settings: Settings, database: Database, clock: Clock, gateway: PaymentGateway) -> None:
        self.settings = settings
        self.database = database
        self.clock = clock
        self.gateway = gateway
        self.collection = settings.collection_policy()
        self.license_checks = CheckLimits(
            settings.license_checks_per_address, settings.license_checks_overall
        )
        # PostgreSQL: the NOTIFY listener while the app runs (readiness and metrics look at it).
        self.feed_listener: PostgresListener | None = None
        # Told about charges, event deliveries and month-close progress: the app's metrics.
        self.observer: Observer = NO_OBSERVER
        self.job_services = JobServices(database, gateway, clock, self.collection)
        # Webhook endpoint hosts resolve through DNS or fixed answers (LICENSING_WEBHOOK_RESOLVE).
        self.webhook_lookup = AddressLookup(dict(settings.webhook_resolve))
        self.webhook_dispatcher: WebhookDispatcher | None = None
        # Background jobs: procrastinate on PostgreSQL, in-process on SQLite (app/jobs.py).
        self.jobs = job_engine(
            settings.database_url,
            self.job_services,
            embedded_worker=settings.embedded_worker,
            periodic=settings.periodic_jobs,
            queue_prefix=settings.job_queue_prefix,
        )

    async def start_jobs(self) -> None:
        """SQLite: the in-process runner (and its periodic tasks); PostgreSQL: a worker if embedded."""
        if self.database.is_sqlite or self.settings.embedded_worker:
            await self.jobs.start()

    def feed_listener_up(self) -> bool:
        return self.database.is_sqlite or (
            self.feed_listener is not None and self.feed_listener.connected.is_set()
        )


def make_gateway(settings: Settings) -> StripeGateway:
    settings.require_own_stripe_secrets()
    return StripeGateway(settings.stripe_api_key, settings.stripe_api_base, settings.stripe_webhook_secret)


def make_clock(settings: Settings) -> Clock:
    if settings.sandbox:
        return SettableClock(settings.sandbox_start or SystemClock().now())
    return SystemClock()


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return ""
    return token.strip()


class LicensingGraphQL(GraphQL[RequestContext, None]):
    # Only graphql-transport-ws: its handler ends a connection when the token does (app.sockets).
    graphql_transport_ws_handler_class = TokenBoundHandler

    def __init__(
        self, services: Services, metrics: Metrics, tracing: Callable[[], SchemaExtension] | None = None
    ) -> None:
        settings = services.settings
        observers = [lambda: OperationObserver(metrics=metrics), *([tracing] if tracing else [])]
        super().__init__(
            build_schema(settings.query_limits, observers=observers),
            # Off (LICENSING_GRAPHIQL=0): a browser's GET /graphql is a 404; the API is unchanged.
            graphql_ide="graphiql" if settings.graphiql else None,
            allowed_origins=settings.websocket_origins,
            max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
            keep_alive=True,
            keep_alive_interval=15,
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        )
        self.services = services
        # One watch per API token for all of this worker's sockets (app.sockets).
        self.token_watches = TokenWatches(services.database, services.clock)
        # One task per partner delivers its caught-up subscriptions (app.live_tail).
        self.live_tails = PartnerTails(services.database)
        self.graphiql_page = GraphiQLPage() if settings.graphiql else None

    async def render_graphql_ide(self, request: Request) -> Response:
        """Our own page with its files from the package, not Strawberry's page loading a CDN."""
        assert self.graphiql_page is not None  # Strawberry asks only when graphql_ide is set
        return self.graphiql_page.response()

    async def on_ws_connect(self, context: RequestContext) -> UnsetType | dict[str, object] | None:
        """Authenticate a websocket from `connection_params.authorization`; refuse it (4403) when that is
        malformed, unknown, revoked or expired. Without one the socket is anonymous: only what needs no
        token runs on it (licenseStatus, validateLicense, support); the rest answers UNAUTHENTICATED."""
        params = context.connection_params or {}
        context.connection_params = None  # read once, here: an open socket does not keep them
        if not any(name in params for name in ("authorization", "Authorization")):
            return UNSET
        raw = params.get("authorization") or params.get("Authorization")
        token = bearer_token(raw) if isinstance(raw, str) and " " in raw else raw
        principal = (
            await authenticate(self.services.database, token, self.services.clock.now())
            if isinstance(token, str) and token
            else None
        )
        if principal is None:
            raise ConnectionRejectionError(
                {"message": "Send a valid API token as connection_params.authorization."}
            )
        context.principal = principal
        context.credential_problem = None
        return UNSET

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Coroutine[Any, Any, None]:
        # Not a coroutine itself: a websocket goes straight to Strawberry, with no frame of this
        # method kept for the socket's life.
        if scope["type"] != "http":
            return super().__call__(scope, receive, send)
        return self._http(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Strawberry answers a bad request in plain text; here it gets the error model."""
        request = Request(scope, receive=receive)
        try:
            if scope["method"] == "POST" and is_json(scope) and not self._stream_transport_map:
                response = await self.answer_json_post(request)
            else:
                response = await self.run(request)
        except HTTPException as refused:
            code = {404: ErrorCode.NOT_FOUND, 405: ErrorCode.BAD_REQUEST}.get(refused.status_code)
            body = error_body(code or ErrorCode.BAD_REQUEST, refused.reason, request_id_for(scope))
            response = Response(body, status_code=refused.status_code, media_type="application/json")
        await response(scope, receive, send)

    async def answer_json_post(self, request: Request) -> Response:
        """A POST with a JSON body, answered as Strawberry's `run` answers it (same checks, refusals and
        result) without the steps that only other transports need (GET, GraphiQL, multipart, streams)."""
        context = self.request_context(request)
        context.shared_reads = SharedReads(self.services.database)
        try:
            return await self._answer_json_post(request, context)
        finally:
            await context.end_reads()

    async def _answer_json_post(self, request: Request, context: RequestContext) -> Response:
        data = self.parse_json(await request.body())
        query, variables, extensions = data.get("query"), data.get("variables"), data.get("extensions")
        if not isinstance(query, str | None):
            raise HTTPException(400, "The GraphQL operation's `query` must be a string or null, if provided.")
        if not isinstance(variables, dict | None):
            raise HTTPException(
                400, "The GraphQL operation's `variables` must be an object or null, if provided."
            )
        if not isinstance(extensions, dict | None):
            raise HTTPException(
                400, "The GraphQL operation's `extensions` must be an object or null, if provided."
            )
        try:
            result = await self.schema.execute(
                query,
                variable_values=variables,
                context_value=context,
                operation_name=data.get("operationName"),
                allowed_operation_types=POST_OPERATIONS,
                operation_extensions=extensions,
            )
        except CannotGetOperationTypeError as error:
            raise HTTPException(400, error.as_http_error_reason()) from error
        except InvalidOperationTypeError as error:
            raise HTTPException(400, error.as_http_error_reason("POST")) from error
        except MissingQueryError as error:
            raise HTTPException(400, "No GraphQL query found in the request") from error
        return Response(orjson.dumps(process_result(result)), media_type="application/json")

    def encode_json(self, data: object) -> str:
        # Text, not bytes: the websocket handler sends it as a text frame, which browsers' graphql-ws
        # clients require (bytes went out as binary frames, which they cannot read).
        return orjson.dumps(data).decode()

    def decode_json(self, data: str | bytes) -> object:
        """JSON from HTTP bodies and websocket messages; anything else is a JSONDecodeError (400/4400)."""
        try:
            value = json.loads(data)
        except (ValueError, RecursionError) as error:  # bad UTF-8 and deep nesting included
            raise json.JSONDecodeError(f"not valid JSON: {type(error).__name__}", "", 0) from error
        if json_depth_exceeds(value):
            raise json.JSONDecodeError("nested too deeply", "", 0)
        return value

    def parse_json(self, data: str | bytes) -> Any:
        """An HTTP body: one JSON object with `query` (batches are not accepted)."""
        value = super().parse_json(data)
        if not isinstance(value, dict):
            raise HTTPException(400, "The body must be a JSON object with a `query` string.")
        return value

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> RequestContext:
        return self.request_context(request)

    def request_context(self, request: Request | WebSocket) -> RequestContext:
        """The token is looked up when the operation needs a caller (schema.tokens.identify_if_needed)."""
        context = self.anonymous_context(request_id_for(request.scope))
        # A websocket's caller comes from its connection_params (on_ws_connect), not from headers.
        context.over_websocket = isinstance(request, WebSocket)
        if not context.over_websocket:
            context.unread_token = bearer_token(request.headers.get("authorization"))
        context.client_address = None if request.client is None else request.client.host
        return context

    async def context_for(self, token: str | None, request_id: str) -> RequestContext:
        """A context whose caller is already identified (downloads outside GraphQL)."""
        context = self.anonymous_context(request_id)
        context.unread_token = token
        await identify_caller(context)
        return context

    def anonymous_context(self, request_id: str) -> RequestContext:
        services = self.services
        return RequestContext(
            database=services.database,
            clock=services.clock,
            principal=None,
            request_id=request_id,
            support=services.settings.support,
            sandbox=services.settings.sandbox,
            gateway=services.gateway,
            collection=services.collection,
            license_checks=services.license_checks,
            webhook_lookup=services.webhook_lookup,
            jobs=services.jobs,
            observer=services.observer,
        )


POST_OPERATIONS = OperationType.from_http("POST")


def is_json(scope: Scope) -> bool:
    """Whether the request says its body is JSON (`application/json`, with or without parameters)."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.partition(b";")[0].strip().lower() == b"application/json"
    return False


def refusal(error: DomainError) -> JSONResponse:
    """A download refused: 401 without a valid token, 404 for an invoice the caller may not see, 400 for
    bad parameters."""
    statuses = {ErrorCode.UNAUTHENTICATED: 401, ErrorCode.NOT_FOUND: 404, ErrorCode.INVALID_INPUT: 400}
    body = {"code": error.code.value, "message": error.message}
    if error.field is not None:
        body["field"] = error.field
    return JSONResponse(body, status_code=statuses.get(error.code, 403))


def cors_middleware(settings: Settings) -> list[Middleware]:
    """CORS for a frontend on another origin: only the listed origins get CORS headers (none if empty)."""
    if not settings.cors_origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-Id"],
            expose_headers=["X-Request-Id"],
            max_age=600,
        )
    ]


class GraphQLPosts:
    """ASGI middleware, innermost: a POST to /graphql goes straight to the GraphQL app, as the router
    would send it (same route in the scope, for the metrics), without matching the route table or the
    exception middleware (that app answers its own refusals). Everything else is routed as before."""

    def __init__(self, app: ASGIApp, *, route: Route) -> None:
        self.app = app
        self.route = route

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine itself: it only chooses the next app, and keeps no frame while that runs.
        direct = scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path")
        if direct and scope["path"] == self.route.path:
            scope["route"] = self.route
            scope["endpoint"] = self.route.endpoint
            scope["path_params"] = {}
            return self.route.app(scope, receive, send)
        return self.app(scope, receive, send)


def tune_garbage_collection(gen0_threshold: int) -> None:
    """Collect less often than CPython's default (700 allocations): a month's estimate or close makes
    ~100k objects that live for the whole request, and each young collection re-walks them."""
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)


def tune_logging() -> None:
    """For a served worker (app.asgi; tests keep the defaults): log records skip what no line of ours
    prints: the caller's source line (a stack walk per record), thread, process and multiprocessing
    names (the logging HOWTO's "Optimization" switches)."""
    logging._srcfile = None  # type: ignore[attr-defined]  # documented there as the way to skip it
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def create_app(
    settings: Settings | None = None, *, clock: Clock | None = None, gateway: PaymentGateway | None = None
) -> Starlette:
    """The app; tests pass their clock and gateway (then they close the gateway themselves)."""
    settings = settings or Settings.from_env()
    settings.require_own_stripe_secrets()
    tune_garbage_collection(settings.gc_gen0_threshold)
    owns_gateway = gateway is None
    services = Services(
        settings,
        Database(settings.database_url),
        clock or make_clock(settings),
        gateway if gateway is not None else make_gateway(settings),
    )
    # Websockets also wait on their token's key (to close when it is revoked): those are not subscriptions.
    metrics = Metrics(
        lambda: services.database.signal.waiting(excluding_prefix=TOKEN_SIGNAL_PREFIX),
        services.feed_listener_up,
        enabled=settings.metrics,
    )
    services.observer = metrics
    services.job_services.observer = metrics  # jobs run in this process count here too
    tracer_provider = None
    if settings.otel_tracing:  # imported only when on: off, OpenTelemetry costs nothing
        from app.tracing import tracer_provider as make_tracer_provider
        from app.tracing import tracing_extension

        tracer_provider = make_tracer_provider(settings)
    graphql = LicensingGraphQL(
        services, metrics, tracing_extension(tracer_provider) if tracer_provider is not None else None
    )
    metrics.count_fanout(fanout_stats(graphql.schema))
    readiness = Readiness(
        services.database,
        StripeProbe(settings.stripe_api_base, settings.stripe_api_key),
        services.feed_listener_up,
    )

    async def healthz(_request: Request) -> JSONResponse:
        """Liveness only: the process answers. Whether it can serve is /readyz."""
        return JSONResponse({"status": "ok"})

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        listener = None
        if not services.database.is_sqlite:
            # Other workers' commits reach this worker's subscribers through NOTIFY.
            listener = PostgresListener(
                settings.database_url, services.database.signal, retry_seconds=settings.feed_retry_seconds
            )
            listener.start()
            services.feed_listener = listener
        delivery, sender = webhook_delivery(
            settings, services.database, services.clock, services.webhook_lookup
        )
        if settings.webhook_delivery:
            services.job_services.webhooks = delivery
            services.webhook_dispatcher = WebhookDispatcher(
                services.database, services.jobs, poll_seconds=settings.webhook_poll_seconds
            )
            services.webhook_dispatcher.start()
        await services.start_jobs()
        try:
            yield
        finally:
            if services.webhook_dispatcher is not None:
                await services.webhook_dispatcher.stop()
            await services.jobs.close()
            await sender.close()
            if listener is not None:
                await listener.stop()
            if owns_gateway:
                await services.gateway.close()
            await services.database.dispose()
            if tracer_provider is not None:
                await asyncio.to_thread(tracer_provider.shutdown)  # sends the spans still batched

    async def invoice_csv(request: Request) -> Response:
        context = await graphql.context_for(
            bearer_token(request.headers.get("authorization")), request_id_for(request.scope)
        )
        try:
            invoice, chunks = await invoice_day_lines_csv(
                context, invoice_id=request.path_params["invoice_id"]
            )
        except DomainError as error:
            return refusal(error)
        filename = f"{invoice.number}-day-lines.csv"
        return StreamingResponse(
            chunks,
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )

    async def invoice_pdf(request: Request) -> Response:
        """The invoice as a PDF, for the partner's token or a staff token."""
        context = await graphql.context_for(
            bearer_token(request.headers.get("authorization")), request_id_for(request.scope)
        )
        try:
            document = await invoice_document(context, invoice_id=request.path_params["invoice_id"])
        except DomainError as error:
            return refusal(error)
        return Response(
            render_invoice_pdf(document),
            media_type="application/pdf",
            headers={"Content-Disposition": f'inline; filename="{document.invoice.number}.pdf"'},
        )

    async def audit_log_csv(request: Request) -> Response:
        """The audit log as CSV for the same filter as auditLog (query parameters), streamed in batches."""
        context = await graphql.context_for(
            bearer_token(request.headers.get("authorization")), request_id_for(request.scope)
        )
        try:
            lines = await export_audit_log(context, where=audit_filter(request.query_params))
        except DomainError as error:
            return refusal(error)
        return StreamingResponse(
            lines,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="audit-log.csv"'},
        )

    async def stripe_webhook(request: Request) -> Response:
        """Verify the signature on the raw body first: a bad or stale one, or a signed body that is not
        an event, is a 400 in the error model (`code`, `message`) and nothing is applied."""
        payload = await request.body()
        try:
            event = services.gateway.parse_webhook(payload, request.headers.get("stripe-signature"))
        except WebhookRejected as error:
            refusal = {"code": ErrorCode.INVALID_INPUT.value, "message": str(error)}
            return JSONResponse(refusal, status_code=400)
        outcome = await apply_webhook(services.database, services.gateway, event, now=services.clock.now())
        return JSONResponse({"received": True, "outcome": outcome.value})

    graphql_route = Route("/graphql", graphql, methods=["GET", "POST"])
    app = Starlette(
        routes=[
            Route("/webhooks/stripe", stripe_webhook, methods=["POST"]),
            graphql_route,
            Route("/invoices/{invoice_id}/day-lines.csv", invoice_csv),
            Route("/invoices/{invoice_id}.pdf", invoice_pdf),
            Route("/audit-log.csv", audit_log_csv),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/readyz", readiness.endpoint),
            *([Route("/metrics", metrics.endpoint)] if settings.metrics else []),
            *(GraphiQLPage.routes() if settings.graphiql else []),
        ],
        lifespan=lifespan,
        middleware=[
            *cors_middleware(settings),
            Middleware(
                RequestEdge,
                max_body_bytes=settings.max_body_bytes,
                timeout_seconds=settings.request_timeout_seconds,
            ),
            Middleware(RequestObserver, metrics=metrics),
            Middleware(GraphQLPosts, route=graphql_route),
        ],
    )
    app.state.services = services
    return app
