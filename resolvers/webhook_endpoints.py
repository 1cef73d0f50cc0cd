"""Partner webhook endpoints in the API: register, list, disable, delete, rotate the secret, look at
deliveries and ask for one again. A partner only ever sees and changes its own endpoints."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from domain.access import Permission
from domain.errors import DomainError, ErrorCode
from domain.webhooks import (
    MAX_ENDPOINTS_PER_PARTNER,
    SECRET_PREFIX,
    EndpointChange,
    EndpointStatus,
    WebhookEndpoint,
    endpoint_event,
    endpoint_url,
    event_filter,
)
from persistence.pagination import Page
from persistence.unit_of_work import UnitOfWork
from persistence.webhooks import Attempt, Delivery, StoredEndpoint
from resolvers.context import RequestContext
from resolvers.webhook_jobs import queue_endpoint
from resolvers.webhook_sending import AddressLookup


@dataclass(frozen=True)
class EndpointGrant:
    """A created endpoint, or one whose secret was rotated: the secret is shown in this answer only."""

    endpoint: WebhookEndpoint
    secret: str


@dataclass(frozen=True)
class DeliveryRecord:
    """A delivery with its attempts."""

    delivery: Delivery
    attempts: list[Attempt]


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


async def create_webhook_endpoint(ctx: RequestContext, *, url: str, events: list[str]) -> EndpointGrant:
    """Register an endpoint for the caller's partner: it receives every event of the feed that matches
    `events`, from now on. The URL must be https and resolve to public addresses only."""
    partner_id = ctx.partner_id(Permission.WEBHOOKS_MANAGE)
    checked = endpoint_url(url.strip(), sandbox=ctx.sandbox)
    wanted = event_filter(events)
    await (ctx.webhook_lookup or AddressLookup()).public_addresses(checked, sandbox=ctx.sandbox)
    now = ctx.clock.now()
    endpoint = WebhookEndpoint(
        id="whe_" + secrets.token_hex(8),
        partner_id=partner_id,
        url=checked.url,
        events=wanted,
        status=EndpointStatus.ENABLED,
        created_at=now,
    )
    secret = new_secret()
    async with ctx.unit_of_work() as uow:
        await uow.partners.lock(partner_id)
        if await uow.webhooks.count_endpoints(partner_id) >= MAX_ENDPOINTS_PER_PARTNER:
            raise DomainError(
                ErrorCode.INVALID_INPUT,
                f"A partner has at most {MAX_ENDPOINTS_PER_PARTNER} webhook endpoints; delete one first.",
                "url",
            )
        # From the feed's position now: only what happens after registering is delivered.
        await uow.webhooks.add_endpoint(endpoint, secret, await uow.events.latest_seq(partner_id))
        uow.collect(endpoint_event(endpoint, EndpointChange.CREATED, now))
    return EndpointGrant(endpoint, secret)


async def list_webhook_endpoints(ctx: RequestContext) -> list[WebhookEndpoint]:
    partner_id = ctx.partner_id(Permission.WEBHOOKS_READ)
    async with ctx.reader() as uow:
        return await uow.webhooks.endpoints(partner_id)


async def disable_webhook_endpoint(ctx: RequestContext, *, endpoint_id: str) -> WebhookEndpoint:
    """Stop deliveries to the endpoint (what is pending stays pending and is shown; nothing is sent)."""
    partner_id = ctx.partner_id(Permission.WEBHOOKS_MANAGE)
    now = ctx.clock.now()
    async with ctx.unit_of_work() as uow:
        await uow.partners.lock(partner_id)
        stored = await _own_endpoint(uow, partner_id, endpoint_id)
        if stored.endpoint.status is EndpointStatus.DISABLED:
            return stored.endpoint
        await uow.webhooks.disable(endpoint_id, now, "Disabled by the partner.")
        uow.collect(endpoint_event(stored.endpoint, EndpointChange.DISABLED, now, reason="partner"))
        changed = await uow.webhooks.endpoint(endpoint_id)
    assert changed is not None
    return changed.endpoint


async def delete_webhook_endpoint(ctx: RequestContext, *, endpoint_id: str) -> WebhookEndpoint:
    """Remove the endpoint with its deliveries and their attempts."""
    partner_id = ctx.partner_id(Permission.WEBHOOKS_MANAGE)
    now = ctx.clock.now()
    async with ctx.unit_of_work() as uow:
        await uow.partners.lock(partner_id)
        stored = await _own_endpoint(uow, partner_id, endpoint_id)
        await uow.webhooks.delete_endpoint(endpoint_id)
        uow.collect(endpoint_event(stored.endpoint, EndpointChange.DELETED, now))
    return stored.endpoint


async def rotate_webhook_secret(ctx: RequestContext, *, endpoint_id: str) -> EndpointGrant:
    """A new signing secret, used from the next attempt on; the old one stops at once."""
    partner_id = ctx.partner_id(Permission.WEBHOOKS_MANAGE)
    now = ctx.clock.now()
    secret = new_secret()
    async with ctx.unit_of_work() as uow:
        await uow.partners.lock(partner_id)
        stored = await _own_endpoint(uow, partner_id, endpoint_id)
        await uow.webhooks.set_secret(endpoint_id, secret)
        uow.collect(endpoint_event(stored.endpoint, EndpointChange.SECRET_ROTATED, now))
    return EndpointGrant(stored.endpoint, secret)


async def webhook_deliveries(
    ctx: RequestContext, *, endpoint_id: str, first: int | None, after: str | None, count_total: bool
) -> Page[DeliveryRecord]:
    """The endpoint's deliveries, newest event first, each with every attempt and its answer."""
    partner_id = ctx.partner_id(Permission.WEBHOOKS_READ)
    async with ctx.reader() as uow:
        await _own_endpoint(uow, partner_id, endpoint_id)
        page = await uow.webhooks.deliveries_page(
            endpoint_id, first=first, after=after, count_total=count_total
        )
        attempts = await uow.webhooks.attempts_of([delivery.id for _, delivery in page.items])
    return Page(
        items=[(cursor, DeliveryRecord(delivery, attempts[delivery.id])) for cursor, delivery in page.items],
        has_next_page=page.has_next_page,
        has_previous_page=page.has_previous_page,
        total_count=page.total_count,
    )


async def redeliver_webhook(ctx: RequestContext, *, delivery_id: str) -> DeliveryRecord:
    """Ask for one more attempt of a delivery, now, outside the feed's order (a delivered event is sent
    again with the same event id, so the receiver can tell it has seen it)."""
    partner_id = ctx.partner_id(Permission.WEBHOOKS_MANAGE)
    now = ctx.clock.now()
    async with ctx.unit_of_work() as uow:
        await uow.partners.lock(partner_id)
        delivery = await uow.webhooks.delivery(delivery_id)
        if delivery is None or delivery.partner_id != partner_id:
            raise DomainError(ErrorCode.NOT_FOUND, f"No webhook delivery '{delivery_id}'.", "deliveryId")
        stored = await _own_endpoint(uow, partner_id, delivery.endpoint_id)
        if stored.endpoint.status is not EndpointStatus.ENABLED:
            raise DomainError(
                ErrorCode.INVALID_TRANSITION,
                "The endpoint is disabled: nothing is sent to it. Register it again to receive webhooks.",
                "deliveryId",
            )
        await uow.webhooks.request_redelivery(delivery_id, now)
        requested = await uow.webhooks.delivery(delivery_id)
        attempts = await uow.webhooks.attempts_of([delivery_id])
    assert requested is not None
    if ctx.jobs is not None:  # sent by the next free worker, not at the next look for due work
        await queue_endpoint(ctx.jobs, requested.endpoint_id)
    return DeliveryRecord(requested, attempts[delivery_id])


async def _own_endpoint(uow: UnitOfWork, partner_id: str, endpoint_id: str) -> StoredEndpoint:
    """The caller's endpoint; another partner's answers exactly like an unknown one."""
    stored = await uow.webhooks.endpoint(endpoint_id)
    if stored is None or stored.endpoint.partner_id != partner_id:
        raise DomainError(ErrorCode.NOT_FOUND, f"No webhook endpoint '{endpoint_id}'.", "id")
    return stored
