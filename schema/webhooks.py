"""Partner webhooks in the API: endpoints, their deliveries and attempts (docs/webhooks.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from domain.webhooks import DeliveryStatus, EndpointStatus
from domain.webhooks import WebhookEndpoint as StoredEndpoint
from persistence.webhooks import Attempt
from resolvers import webhook_endpoints
from resolvers.feed import encode_feed_cursor
from schema.context import Info
from schema.enums import described_enum
from schema.errors import MUTATION_INPUT, UserError, attempt
from schema.pagination import After, Connection, First, connection, selects_total_count

described_enum(
    EndpointStatus,
    name="WebhookEndpointStatus",
    description="Whether an endpoint receives webhooks.",
    values={
        EndpointStatus.ENABLED: "Receives every matching event of the partner's feed.",
        EndpointStatus.DISABLED: "Receives nothing: disabled by the partner, or after an event could not "
        "be delivered for 3 days.",
    },
)
described_enum(
    DeliveryStatus,
    name="WebhookDeliveryStatus",
    description="Where one event's delivery to one endpoint stands.",
    values={
        DeliveryStatus.PENDING: "Waiting for its next attempt, or for the events before it.",
        DeliveryStatus.SUCCEEDED: "The endpoint answered 2xx.",
        DeliveryStatus.FAILED: "Not delivered within 3 days: given up, and the endpoint disabled.",
    },
)

EVENTS_DESCRIPTION = (
    "Which feed events to send: '*' (all), a stream (license, standing, invoice, payment_method, api_token, "
    "webhook_endpoint) or one event as 'stream.action' (e.g. 'invoice.finalize'); 1 to 50 entries."
)


@strawberry.type(description="A URL of the partner's that receives its feed events as signed JSON.")
class WebhookEndpoint:
    id: strawberry.ID = strawberry.field(description="Endpoint id.")
    url: str = strawberry.field(description="Where webhooks are POSTed (https; checked to be public).")
    events: list[str] = strawberry.field(description=EVENTS_DESCRIPTION)
    status: EndpointStatus = strawberry.field(description="Whether webhooks are sent to it.")
    created_at: datetime = strawberry.field(description="When it was registered: later events are sent.")
    disabled_at: datetime | None = strawberry.field(description="When it was disabled, if it was.")
    disabled_reason: str | None = strawberry.field(description="Why it was disabled, if it was.")

    @classmethod
    def from_domain(cls, endpoint: StoredEndpoint) -> WebhookEndpoint:
        return cls(
            id=strawberry.ID(endpoint.id),
            url=endpoint.url,
            events=list(endpoint.events),
            status=endpoint.status,
            created_at=endpoint.created_at,
            disabled_at=endpoint.disabled_at,
            disabled_reason=endpoint.disabled_reason,
        )


@strawberry.type(description="One try at sending a delivery, and what the receiver answered.")
class WebhookAttempt:
    number: int = strawberry.field(description="1 for the first attempt of this delivery, then 2, 3, ...")
    manual: bool = strawberry.field(description="Asked for with redeliverWebhook.")
    started_at: datetime = strawberry.field(description="When it was sent.")
    duration_ms: int = strawberry.field(description="How long it took, in milliseconds.")
    status_code: int | None = strawberry.field(description="The HTTP status answered, if any.")
    response_excerpt: str | None = strawberry.field(
        description="The first 4 KiB of the answer's body (at most 64 KiB are read)."
    )
    error: str | None = strawberry.field(
        description="Why it failed without a 2xx: timeout, refused address, redirect, connection error."
    )
    succeeded: bool = strawberry.field(description="The receiver answered 2xx.")

    @classmethod
    def from_domain(cls, tried: Attempt) -> WebhookAttempt:
        return cls(
            number=tried.number,
            manual=tried.manual,
            started_at=tried.started_at,
            duration_ms=tried.duration_ms,
            status_code=tried.status_code,
            response_excerpt=tried.response_excerpt,
            error=tried.error,
            succeeded=tried.succeeded,
        )


@strawberry.type(description="One feed event on its way to one endpoint, with every attempt.")
class WebhookDelivery:
    id: strawberry.ID = strawberry.field(description="Delivery id (for redeliverWebhook).")
    event_id: str = strawberry.field(description="The event's id, as sent in the body: deduplicate on it.")
    event_type: str = strawberry.field(description="'stream.action', as sent in the body's `type`.")
    cursor: str = strawberry.field(
        description="The event's feed cursor (usable as a subscription's `since`)."
    )
    status: DeliveryStatus = strawberry.field(description="Where the delivery stands.")
    created_at: datetime = strawberry.field(description="When the event was queued for this endpoint.")
    next_attempt_at: datetime | None = strawberry.field(
        description="When it is tried next (pending only; later events wait for it)."
    )
    completed_at: datetime | None = strawberry.field(description="When it succeeded or was given up.")
    redelivery_requested_at: datetime | None = strawberry.field(
        description="A redelivery asked for and not made yet."
    )
    attempts: list[WebhookAttempt] = strawberry.field(description="Every attempt, oldest first.")

    @classmethod
    def from_domain(cls, record: webhook_endpoints.DeliveryRecord) -> WebhookDelivery:
        delivery = record.delivery
        return cls(
            id=strawberry.ID(delivery.id),
            event_id=f"evt_{delivery.event_id}",
            event_type=delivery.event_type,
            cursor=encode_feed_cursor(delivery.event_seq),
            status=delivery.status,
            created_at=delivery.created_at,
            next_attempt_at=delivery.next_attempt_at if delivery.status is DeliveryStatus.PENDING else None,
            completed_at=delivery.completed_at,
            redelivery_requested_at=delivery.redeliver_at,
            attempts=[WebhookAttempt.from_domain(tried) for tried in record.attempts],
        )


@strawberry.input(description="An endpoint to register.")
class CreateWebhookEndpointInput:
    url: str = strawberry.field(description="https URL resolving to public addresses only.")
    events: list[str] = strawberry.field(description=EVENTS_DESCRIPTION)


@strawberry.input(description="The endpoint to act on.")
class WebhookEndpointIdInput:
    id: strawberry.ID = strawberry.field(description="Endpoint id.")


@strawberry.input(description="The delivery to send again.")
class RedeliverWebhookInput:
    delivery_id: strawberry.ID = strawberry.field(description="Delivery id (from webhookDeliveries).")


@strawberry.type(description="The result of createWebhookEndpoint or rotateWebhookSecret.")
class WebhookEndpointSecretPayload:
    endpoint: WebhookEndpoint | None = strawberry.field(description="The endpoint, unless there were errors.")
    secret: str | None = strawberry.field(
        description="The signing secret (whsec_...). Shown in this answer only: keep it."
    )
    errors: list[UserError] = strawberry.field(description="Why nothing changed, if it did not.")


@strawberry.type(description="The result of disableWebhookEndpoint or deleteWebhookEndpoint.")
class WebhookEndpointPayload:
    endpoint: WebhookEndpoint | None = strawberry.field(description="The endpoint, unless there were errors.")
    errors: list[UserError] = strawberry.field(description="Why nothing changed, if it did not.")


@strawberry.type(description="The result of redeliverWebhook.")
class RedeliverWebhookPayload:
    delivery: WebhookDelivery | None = strawberry.field(
        description="The delivery, with the redelivery requested; unless there were errors."
    )
    errors: list[UserError] = strawberry.field(description="Why nothing was requested, if it was not.")


def _secret_payload(
    grant: webhook_endpoints.EndpointGrant | None, errors: list[UserError]
) -> WebhookEndpointSecretPayload:
    if grant is None:
        return WebhookEndpointSecretPayload(endpoint=None, secret=None, errors=errors)
    return WebhookEndpointSecretPayload(
        endpoint=WebhookEndpoint.from_domain(grant.endpoint), secret=grant.secret, errors=errors
    )


def _endpoint_payload(endpoint: StoredEndpoint | None, errors: list[UserError]) -> WebhookEndpointPayload:
    return WebhookEndpointPayload(
        endpoint=None if endpoint is None else WebhookEndpoint.from_domain(endpoint), errors=errors
    )


@strawberry.type
class WebhookQuery:
    @strawberry.field(description="The partner's webhook endpoints, oldest first (never their secrets).")
    async def webhook_endpoints(self, info: Info) -> list[WebhookEndpoint]:
        endpoints = await webhook_endpoints.list_webhook_endpoints(info.context)
        return [WebhookEndpoint.from_domain(endpoint) for endpoint in endpoints]

    @strawberry.field(description="An endpoint's deliveries, newest event first, with every attempt.")
    async def webhook_deliveries(
        self,
        info: Info,
        endpoint_id: Annotated[strawberry.ID, strawberry.argument(description="The endpoint.")],
        first: First = None,
        after: After = None,
    ) -> Connection[WebhookDelivery]:
        page = await webhook_endpoints.webhook_deliveries(
            info.context,
            endpoint_id=str(endpoint_id),
            first=first,
            after=after,
            count_total=selects_total_count(info),
        )
        return connection(page, WebhookDelivery.from_domain)


@strawberry.type
class WebhookMutation:
    @strawberry.mutation(
        description="Register a webhook endpoint: every later feed event matching `events` is POSTed to it, "
        "signed (Licensing-Signature). Answers the signing secret, once."
    )
    async def create_webhook_endpoint(
        self, info: Info, input: Annotated[CreateWebhookEndpointInput, MUTATION_INPUT]
    ) -> WebhookEndpointSecretPayload:
        grant, errors = await attempt(
            webhook_endpoints.create_webhook_endpoint(info.context, url=input.url, events=input.events)
        )
        return _secret_payload(grant, errors)

    @strawberry.mutation(description="Stop sending to an endpoint (its deliveries stay listed).")
    async def disable_webhook_endpoint(
        self, info: Info, input: Annotated[WebhookEndpointIdInput, MUTATION_INPUT]
    ) -> WebhookEndpointPayload:
        endpoint, errors = await attempt(
            webhook_endpoints.disable_webhook_endpoint(info.context, endpoint_id=str(input.id))
        )
        return _endpoint_payload(endpoint, errors)

    @strawberry.mutation(description="Remove an endpoint with its deliveries and attempts.")
    async def delete_webhook_endpoint(
        self, info: Info, input: Annotated[WebhookEndpointIdInput, MUTATION_INPUT]
    ) -> WebhookEndpointPayload:
        endpoint, errors = await attempt(
            webhook_endpoints.delete_webhook_endpoint(info.context, endpoint_id=str(input.id))
        )
        return _endpoint_payload(endpoint, errors)

    @strawberry.mutation(
        description="A new signing secret for an endpoint, used from the next attempt on (the old one stops "
        "at once). Answers the secret, once."
    )
    async def rotate_webhook_secret(
        self, info: Info, input: Annotated[WebhookEndpointIdInput, MUTATION_INPUT]
    ) -> WebhookEndpointSecretPayload:
        grant, errors = await attempt(
            webhook_endpoints.rotate_webhook_secret(info.context, endpoint_id=str(input.id))
        )
        return _secret_payload(grant, errors)

    @strawberry.mutation(
        description="Send a delivery once more, now, outside the feed's order (same event id: receivers "
        "deduplicate on it). The attempt shows in webhookDeliveries."
    )
    async def redeliver_webhook(
        self, info: Info, input: Annotated[RedeliverWebhookInput, MUTATION_INPUT]
    ) -> RedeliverWebhookPayload:
        record, errors = await attempt(
            webhook_endpoints.redeliver_webhook(info.context, delivery_id=str(input.delivery_id))
        )
        return RedeliverWebhookPayload(
            delivery=None if record is None else WebhookDelivery.from_domain(record), errors=errors
        )
