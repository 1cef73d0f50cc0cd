"""The Starlette application: /graphql (HTTP, GraphiQL, websockets), /webhooks/stripe, /healthz."""

from __future__ import annotations

import contextlib
import gc
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.types.unset import UNSET, UnsetType

from app.settings import Settings
from domain.clock import Clock, SettableClock, SystemClock
from domain.errors import DomainError, ErrorCode
from payments.gateway import PaymentGateway, WebhookRejected
from payments.stripe_gateway import StripeGateway
from persistence.database import Database
from persistence.feed import PostgresListener
from resolvers.context import RequestContext
from resolvers.invoices import invoice_day_lines_csv
from resolvers.stripe_webhooks import apply_webhook
from resolvers.tokens import authenticate
from schema.build import build_schema

log = logging.getLogger("licensing.http")


class Services:
    """Everything a request needs that outlives it."""

    def __init__(self, settings: Settings, database: Database, clock: Clock, gateway: PaymentGateway) -> None:
        self.settings = settings
        self.database = database
        self.clock = clock
        self.gateway = gateway
        self.collection = settings.collection_policy()


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
    def __init__(self, services: Services, **options: Any) -> None:
        settings = services.settings
        super().__init__(
            build_schema(
                max_depth=settings.max_query_depth,
                max_tokens=settings.max_query_tokens,
                max_aliases=settings.max_aliases,
            ),
            allowed_origins=settings.websocket_origins,
            max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
            keep_alive=True,
            keep_alive_interval=15,
            **options,
        )
        self.services = services

    async def on_ws_connect(self, context: RequestContext) -> UnsetType | dict[str, object] | None:
        """Authenticate a websocket from `connection_params.authorization`; refuse it (4403) otherwise."""
        params = context.connection_params or {}
        raw = params.get("authorization") or params.get("Authorization")
        token = bearer_token(raw) if isinstance(raw, str) and " " in raw else raw
        principal = (
            await authenticate(self.services.database, token) if isinstance(token, str) and token else None
        )
        if principal is None:
            raise ConnectionRejectionError(
                {"message": "Send a valid API token as connection_params.authorization."}
            )
        context.principal = principal
        context.credential_problem = None
        return UNSET

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> RequestContext:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        if isinstance(response, Response):
            response.headers["X-Request-Id"] = request_id
        return await self.context_for(bearer_token(request.headers.get("authorization")), request_id)

    async def context_for(self, token: str | None, request_id: str) -> RequestContext:
        services = self.services
        principal = None
        problem = None
        if token is not None:
            principal = await authenticate(services.database, token) if token else None
            if principal is None:
                problem = "The API token is malformed, unknown or revoked."
        return RequestContext(
            database=services.database,
            clock=services.clock,
            principal=principal,
            request_id=request_id,
            support=services.settings.support,
            sandbox=services.settings.sandbox,
            credential_problem=problem,
            gateway=services.gateway,
            collection=services.collection,
        )


def tune_garbage_collection(gen0_threshold: int) -> None:
    """Collect less often than CPython's default (700 allocations): a month's estimate or close makes
    ~100k objects that live for the whole request, and each young collection re-walks them."""
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)


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
    graphql = LicensingGraphQL(services)

    async def healthz(_request: Request) -> JSONResponse:
        reachable = await services.database.is_reachable()
        return JSONResponse(
            {"status": "ok" if reachable else "degraded", "database": reachable},
            status_code=200 if reachable else 503,
        )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        listener = None
        if not services.database.is_sqlite:
            # Other workers' commits reach this worker's subscribers through NOTIFY.
            listener = PostgresListener(
                settings.database_url, services.database.signal, retry_seconds=settings.feed_retry_seconds
            )
            listener.start()
        try:
            yield
        finally:
            if listener is not None:
                await listener.stop()
            if owns_gateway:
                await services.gateway.close()
            await services.database.dispose()

    async def invoice_csv(request: Request) -> Response:
        context = await graphql.context_for(
            bearer_token(request.headers.get("authorization")),
            request.headers.get("x-request-id") or uuid.uuid4().hex,
        )
        try:
            invoice, text = await invoice_day_lines_csv(context, invoice_id=request.path_params["invoice_id"])
        except DomainError as error:
            status = {ErrorCode.UNAUTHENTICATED: 401, ErrorCode.NOT_FOUND: 404}.get(error.code, 403)
            return JSONResponse({"code": error.code.value, "message": error.message}, status_code=status)
        filename = f"{invoice.number}-day-lines.csv"
        return Response(
            text, media_type="text/csv", headers={"Content-Disposition": f'attachment; filename="{filename}"'}
        )

    async def stripe_webhook(request: Request) -> Response:
        """Verify the signature on the raw body first: a bad or stale one is a 400 and nothing is applied."""
        payload = await request.body()
        try:
            event = services.gateway.parse_webhook(payload, request.headers.get("stripe-signature"))
        except WebhookRejected as error:
            return JSONResponse({"error": str(error)}, status_code=400)
        outcome = await apply_webhook(services.database, services.gateway, event, now=services.clock.now())
        return JSONResponse({"received": True, "outcome": outcome.value})

    app = Starlette(
        routes=[
            Route("/webhooks/stripe", stripe_webhook, methods=["POST"]),
            Route("/graphql", graphql, methods=["GET", "POST"]),
            Route("/invoices/{invoice_id}/day-lines.csv", invoice_csv),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
        ],
        lifespan=lifespan,
    )
    app.state.services = services
    return app
