"""Partner webhook endpoints, one delivery per (endpoint, feed event), and every attempt at each.

An endpoint follows its partner's feed with its own cursor (`feed_seq`): events after it are turned into
pending deliveries, in feed order, by whoever holds the endpoint's row lock. Deliveries are sent one at
a time per endpoint (the oldest pending first); a claim (`claimed_until`) keeps two workers from sending
the same one while no transaction is open during the HTTP call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    Row,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.webhooks import DeliveryStatus, EndpointStatus, WebhookEndpoint
from persistence.events import RecordedEvent
from persistence.metadata import metadata
from persistence.pagination import CursorCodec, Page, SortKey, cursor_position, keyset_page
from persistence.partners import partners
from persistence.types import UTCDateTime

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("partner_id", String(32), ForeignKey("partners.id"), nullable=False, index=True),
    Column("url", String(2048), nullable=False),
    Column("events", Text, nullable=False),  # JSON list: '*', streams or 'stream.action'
    Column("secret", String(64), nullable=False),  # needed to sign, so kept; shown only when made
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("disabled_at", UTCDateTime(), nullable=True),
    Column("disabled_reason", String(500), nullable=True),
    # The partner's feed position up to which events were turned into deliveries.
    Column("feed_seq", BigInteger, nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("endpoint_id", String(32), ForeignKey("webhook_endpoints.id"), nullable=False),
    Column("partner_id", String(32), ForeignKey("partners.id"), nullable=False),
    Column("event_id", BigInteger, nullable=False),
    Column("event_seq", BigInteger, nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("first_attempt_at", UTCDateTime(), nullable=True),
    Column("next_attempt_at", UTCDateTime(), nullable=True),
    Column("completed_at", UTCDateTime(), nullable=True),
    # A partner asked for one more attempt (redeliverWebhook): made out of feed order, once.
    Column("redeliver_at", UTCDateTime(), nullable=True),
    # Who is sending it now, and until when that claim holds (a crashed sender's claim runs out).
    Column("claim", String(32), nullable=True),
    Column("claimed_until", UTCDateTime(), nullable=True),
    UniqueConstraint("endpoint_id", "event_seq", name="uq_webhook_deliveries_endpoint_event"),
    Index("ix_webhook_deliveries_endpoint_status_seq", "endpoint_id", "status", "event_seq"),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("delivery_id", String(32), ForeignKey("webhook_deliveries.id"), nullable=False, index=True),
    Column("number", Integer, nullable=False),
    Column("manual", Boolean, nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    Column("duration_ms", Integer, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("response_excerpt", Text, nullable=True),
    Column("error", String(500), nullable=True),
    Column("succeeded", Boolean, nullable=False),
)

DELIVERY_CURSOR = CursorCodec("webhook_deliveries", [cursor_position])


@dataclass(frozen=True)
class StoredEndpoint:
    """An endpoint with what only delivery needs: its secret and its feed position."""

    endpoint: WebhookEndpoint
    secret: str
    feed_seq: int


@dataclass(frozen=True)
class Attempt:
    number: int
    manual: bool
    started_at: datetime
    duration_ms: int
    status_code: int | None
    response_excerpt: str | None
    error: str | None
    succeeded: bool


@dataclass(frozen=True)
class Delivery:
    id: str
    endpoint_id: str
    partner_id: str
    event_id: int
    event_seq: int
    event_type: str
    status: DeliveryStatus
    attempts: int
    created_at: datetime
    first_attempt_at: datetime | None
    next_attempt_at: datetime | None
    completed_at: datetime | None
    redeliver_at: datetime | None
    claim: str | None
    claimed_until: datetime | None


class WebhookRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    # -- endpoints ------------------------------------------------------------------------------------

    async def add_endpoint(self, endpoint: WebhookEndpoint, secret: str, feed_seq: int) -> None:
        await self._connection.execute(
            webhook_endpoints.insert().values(
                id=endpoint.id,
                partner_id=endpoint.partner_id,
                url=endpoint.url,
                events=json.dumps(list(endpoint.events)),
                secret=secret,
                status=endpoint.status.value,
                created_at=endpoint.created_at,
                feed_seq=feed_seq,
            )
        )

    async def endpoint(self, endpoint_id: str, *, for_update: bool = False) -> StoredEndpoint | None:
        query = select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
        if for_update:
            query = query.with_for_update()
        row = (await self._connection.execute(query)).one_or_none()
        return None if row is None else _stored_endpoint(row)

    async def endpoints(self, partner_id: str) -> list[WebhookEndpoint]:
        rows = await self._connection.execute(
            select(webhook_endpoints)
            .where(webhook_endpoints.c.partner_id == partner_id)
            .order_by(webhook_endpoints.c.created_at, webhook_endpoints.c.id)
        )
        return [_stored_endpoint(row).endpoint for row in rows]

    async def count_endpoints(self, partner_id: str) -> int:
        result = await self._connection.execute(
            select(func.count()).where(webhook_endpoints.c.partner_id == partner_id)
        )
        return int(result.scalar_one())

    async def set_secret(self, endpoint_id: str, secret: str) -> None:
        await self._connection.execute(
            update(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id).values(secret=secret)
        )

    async def disable(self, endpoint_id: str, at: datetime, reason: str) -> None:
        await self._connection.execute(
            update(webhook_endpoints)
            .where(webhook_endpoints.c.id == endpoint_id)
            .values(status=EndpointStatus.DISABLED.value, disabled_at=at, disabled_reason=reason[:500])
        )

    async def delete_endpoint(self, endpoint_id: str) -> None:
        """The endpoint with its deliveries and their attempts."""
        deliveries = select(webhook_deliveries.c.id).where(webhook_deliveries.c.endpoint_id == endpoint_id)
        await self._connection.execute(
            delete(webhook_attempts).where(webhook_attempts.c.delivery_id.in_(deliveries))
        )
        await self._connection.execute(
            delete(webhook_deliveries).where(webhook_deliveries.c.endpoint_id == endpoint_id)
        )
        await self._connection.execute(delete(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id))

    async def endpoints_with_work(self, now: datetime) -> list[str]:
        """Enabled endpoints that have feed events not yet queued, or a delivery due now."""
        behind = (
            select(webhook_endpoints.c.id)
            .join(partners, partners.c.id == webhook_endpoints.c.partner_id)
            .where(
                webhook_endpoints.c.status == EndpointStatus.ENABLED.value,
                partners.c.event_seq > webhook_endpoints.c.feed_seq,
            )
        )
        due = (
            select(webhook_deliveries.c.endpoint_id)
            .join(webhook_endpoints, webhook_endpoints.c.id == webhook_deliveries.c.endpoint_id)
            .where(
                webhook_endpoints.c.status == EndpointStatus.ENABLED.value,
                or_(
                    and_(
                        webhook_deliveries.c.status == DeliveryStatus.PENDING.value,
                        webhook_deliveries.c.next_attempt_at <= now,
                    ),
                    webhook_deliveries.c.redeliver_at <= now,
                ),
                or_(webhook_deliveries.c.claimed_until.is_(None), webhook_deliveries.c.claimed_until <= now),
            )
        )
        rows = await self._connection.execute(behind.union(due))
        return sorted(row[0] for row in rows)

    async def advance_feed(self, endpoint_id: str, seq: int) -> None:
        await self._connection.execute(
            update(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id).values(feed_seq=seq)
        )

    # -- deliveries -----------------------------------------------------------------------------------

    async def queue(self, delivery_id: str, endpoint_id: str, event: RecordedEvent, at: datetime) -> None:
        await self._connection.execute(
            webhook_deliveries.insert().values(
                id=delivery_id,
                endpoint_id=endpoint_id,
                partner_id=event.partner_id,
                event_id=event.id,
                event_seq=event.seq,
                event_type=f"{event.stream}.{event.action}",
                status=DeliveryStatus.PENDING.value,
                created_at=at,
                next_attempt_at=at,
            )
        )

    async def delivery(self, delivery_id: str) -> Delivery | None:
        row = (
            await self._connection.execute(
                select(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id)
            )
        ).one_or_none()
        return None if row is None else _delivery(row)

    async def head(self, endpoint_id: str) -> Delivery | None:
        """The oldest pending delivery of the endpoint: nothing after it is sent before it."""
        row = (
            await self._connection.execute(
                select(webhook_deliveries)
                .where(
                    webhook_deliveries.c.endpoint_id == endpoint_id,
                    webhook_deliveries.c.status == DeliveryStatus.PENDING.value,
                )
                .order_by(webhook_deliveries.c.event_seq)
                .limit(1)
            )
        ).one_or_none()
        return None if row is None else _delivery(row)

    async def redelivery_due(self, endpoint_id: str, now: datetime) -> Delivery | None:
        row = (
            await self._connection.execute(
                select(webhook_deliveries)
                .where(
                    webhook_deliveries.c.endpoint_id == endpoint_id, webhook_deliveries.c.redeliver_at <= now
                )
                .order_by(webhook_deliveries.c.redeliver_at, webhook_deliveries.c.event_seq)
                .limit(1)
            )
        ).one_or_none()
        return None if row is None else _delivery(row)

    async def claim(self, delivery_id: str, claim: str, until: datetime) -> None:
        await self._connection.execute(
            update(webhook_deliveries)
            .where(webhook_deliveries.c.id == delivery_id)
            .values(claim=claim, claimed_until=until)
        )

    async def request_redelivery(self, delivery_id: str, at: datetime) -> None:
        await self._connection.execute(
            update(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id).values(redeliver_at=at)
        )

    async def record_attempt(self, attempt_id: str, delivery_id: str, attempt: Attempt) -> None:
        await self._connection.execute(
            webhook_attempts.insert().values(
                id=attempt_id,
                delivery_id=delivery_id,
                number=attempt.number,
                manual=attempt.manual,
                started_at=attempt.started_at,
                duration_ms=attempt.duration_ms,
                status_code=attempt.status_code,
                response_excerpt=attempt.response_excerpt,
                error=attempt.error,
                succeeded=attempt.succeeded,
            )
        )

    async def settle(
        self,
        delivery_id: str,
        *,
        status: DeliveryStatus,
        attempts: int,
        first_attempt_at: datetime | None,
        next_attempt_at: datetime | None,
        completed_at: datetime | None,
        manual: bool,
    ) -> None:
        """Store the delivery after an attempt; the claim (and a redelivery request, if that was one) ends."""
        values: dict[str, Any] = {
            "status": status.value,
            "attempts": attempts,
            "first_attempt_at": first_attempt_at,
            "next_attempt_at": next_attempt_at,
            "completed_at": completed_at,
            "claim": None,
            "claimed_until": None,
        }
        if manual:
            values["redeliver_at"] = None
        await self._connection.execute(
            update(webhook_deliveries).where(webhook_deliveries.c.id == delivery_id).values(**values)
        )

    async def deliveries_page(
        self, endpoint_id: str, *, first: int | None, after: str | None, count_total: bool
    ) -> Page[Delivery]:
        """The endpoint's deliveries, newest event first."""
        return await keyset_page(
            self._connection,
            select(webhook_deliveries).where(webhook_deliveries.c.endpoint_id == endpoint_id),
            # One delivery per event of the feed: the event's position orders them.
            SortKey([webhook_deliveries.c.event_seq], DELIVERY_CURSOR, descending=True),
            first=first,
            after=after,
            to_item=_delivery,
            cursor_values=lambda row: [row.event_seq],
            count_total=count_total,
        )

    async def attempts_of(self, delivery_ids: list[str]) -> dict[str, list[Attempt]]:
        """Each delivery's attempts, oldest first (one statement for a page of deliveries)."""
        found: dict[str, list[Attempt]] = {delivery_id: [] for delivery_id in delivery_ids}
        if not delivery_ids:
            return found
        rows = await self._connection.execute(
            select(webhook_attempts)
            .where(webhook_attempts.c.delivery_id.in_(delivery_ids))
            .order_by(webhook_attempts.c.delivery_id, webhook_attempts.c.number)
        )
        for row in rows:
            found[row.delivery_id].append(
                Attempt(
                    number=row.number,
                    manual=row.manual,
                    started_at=row.started_at,
                    duration_ms=row.duration_ms,
                    status_code=row.status_code,
                    response_excerpt=row.response_excerpt,
                    error=row.error,
                    succeeded=row.succeeded,
                )
            )
        return found


def _stored_endpoint(row: Row[Any]) -> StoredEndpoint:
    return StoredEndpoint(
        endpoint=WebhookEndpoint(
            id=row.id,
            partner_id=row.partner_id,
            url=row.url,
            events=tuple(json.loads(row.events)),
            status=EndpointStatus(row.status),
            created_at=row.created_at,
            disabled_at=row.disabled_at,
            disabled_reason=row.disabled_reason,
        ),
        secret=row.secret,
        feed_seq=row.feed_seq,
    )


def _delivery(row: Row[Any]) -> Delivery:
    return Delivery(
        id=row.id,
        endpoint_id=row.endpoint_id,
        partner_id=row.partner_id,
        event_id=row.event_id,
        event_seq=row.event_seq,
        event_type=row.event_type,
        status=DeliveryStatus(row.status),
        attempts=row.attempts,
        created_at=row.created_at,
        first_attempt_at=row.first_attempt_at,
        next_attempt_at=row.next_attempt_at,
        completed_at=row.completed_at,
        redeliver_at=row.redeliver_at,
        claim=row.claim,
        claimed_until=row.claimed_until,
    )
