"""Delivering the partner feed to webhook endpoints: a plain, idempotent use case that the job engine's
tasks call (resolvers/webhook_jobs.py), any number of times, from any number of workers
(docs/webhooks.md, "Delivery").

`deliver_endpoint` takes one endpoint forward: under its partner's lock it turns the feed's new events
into pending deliveries and claims the oldest pending one if it is due; it sends it with no transaction
open; then, under the lock again, it records the attempt and either completes the delivery or schedules
the next attempt (exponential backoff for three days; after that the delivery is given up, the endpoint
disabled and the partner told on its feed). The next event is sent only once the one before it is
delivered or given up. A redelivery asked for by the partner is one extra attempt outside that order.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from domain.actors import PARTNER_WEBHOOKS, Actor
from domain.clock import Clock
from domain.webhooks import (
    SIGNATURE_HEADER,
    DeliveryStatus,
    EndpointChange,
    EndpointStatus,
    RetryPolicy,
    endpoint_event,
    endpoint_url,
    sign,
)
from persistence.database import Database
from persistence.events import RecordedEvent
from persistence.unit_of_work import UnitOfWork
from persistence.webhooks import Attempt, Delivery
from resolvers.feed import encode_feed_cursor
from resolvers.webhook_sending import SendResult, WebhookSender

# Feed events turned into deliveries per transaction, and attempts one call makes before yielding.
QUEUE_BATCH = 500
MAX_ATTEMPTS_PER_CALL = 100
# A claim outlives the attempt's own deadline: only a crashed sender's claim ever runs out.
CLAIM_FOR = timedelta(minutes=2)


@dataclass
class WebhookDelivery:
    """What delivering needs: the database, how to send, the clock (each attempt is signed and recorded at
    its own instant), whether this is sandbox mode, the retry policy, and how long a claim holds (longer
    than an attempt's deadline, so only a crashed sender's claim ever runs out)."""

    database: Database
    sender: WebhookSender
    clock: Clock
    sandbox: bool = False
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    claim_for: timedelta = CLAIM_FOR


@dataclass(frozen=True)
class Claimed:
    """A delivery this caller may send now, with everything the request needs."""

    delivery: Delivery
    claim: str
    manual: bool
    url: str
    secret: str
    event: RecordedEvent


async def deliver_endpoint(delivery: WebhookDelivery, endpoint_id: str) -> int:
    """Send what is due to one endpoint, in feed order; returns the number of attempts made."""
    made = 0
    while made < MAX_ATTEMPTS_PER_CALL:
        now = delivery.clock.now()
        claimed = await _claim_next(delivery, endpoint_id, now)
        if claimed is None:
            break
        body = webhook_body(claimed.event)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "partner-licensing-webhooks/1",
            "Licensing-Event-Id": event_id(claimed.event),
            SIGNATURE_HEADER: sign(claimed.secret, int(now.timestamp()), body),
        }
        result = await delivery.sender.send(
            endpoint_url(claimed.url, sandbox=delivery.sandbox), body, headers
        )
        await _record(delivery, claimed, result, now)
        made += 1
    return made


def event_id(event: RecordedEvent) -> str:
    """The id a receiver deduplicates on: the same for every attempt and redelivery of the event."""
    return f"evt_{event.id}"


def webhook_body(event: RecordedEvent) -> bytes:
    """The JSON a receiver gets: the feed event with its id and cursor."""
    document = {
        "id": event_id(event),
        "type": f"{event.stream}.{event.action}",
        "cursor": encode_feed_cursor(event.seq),
        "partnerId": event.partner_id,
        "stream": event.stream,
        "subject": event.subject,
        "action": event.action,
        "fromState": event.from_state,
        "toState": event.to_state,
        "at": event.at.isoformat(),
        "data": event.payload,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=True).encode()


async def _claim_next(delivery: WebhookDelivery, endpoint_id: str, now: datetime) -> Claimed | None:
    async with UnitOfWork(delivery.database) as uow:
        found = await uow.webhooks.endpoint(endpoint_id)
        if found is None:
            return None
        partner_id = found.endpoint.partner_id
        await uow.partners.lock(partner_id)
        stored = await uow.webhooks.endpoint(endpoint_id, for_update=True)
        if stored is None or stored.endpoint.status is not EndpointStatus.ENABLED:
            return None
        await _queue_new_events(
            uow, stored.endpoint.id, partner_id, stored.feed_seq, stored.endpoint.wants, now
        )
        manual = await uow.webhooks.redelivery_due(endpoint_id, now)
        chosen = manual if manual is not None and _unclaimed(manual, now) else None
        if chosen is None:
            head = await uow.webhooks.head(endpoint_id)
            due = head is not None and head.next_attempt_at is not None and head.next_attempt_at <= now
            chosen = head if due and head is not None and _unclaimed(head, now) else None
        if chosen is None:
            return None
        claim = secrets.token_hex(8)
        await uow.webhooks.claim(chosen.id, claim, now + delivery.claim_for)
        events = await uow.events.after(partner_id, chosen.event_seq - 1, limit=1)
        return Claimed(chosen, claim, chosen is manual, stored.endpoint.url, stored.secret, events[0])


def _unclaimed(candidate: Delivery, now: datetime) -> bool:
    return candidate.claimed_until is None or candidate.claimed_until <= now


async def _queue_new_events(
    uow: UnitOfWork,
    endpoint_id: str,
    partner_id: str,
    feed_seq: int,
    wants: Callable[[str, str], bool],
    now: datetime,
) -> None:
    """The feed's events after the endpoint's position, as pending deliveries (those it wants), at most
    QUEUE_BATCH of them per call so one transaction stays short."""
    queued = 0
    while queued < QUEUE_BATCH:
        events = await uow.events.after(partner_id, feed_seq, limit=QUEUE_BATCH)
        for event in events:
            if wants(event.stream, event.action):
                await uow.webhooks.queue("whd_" + secrets.token_hex(12), endpoint_id, event, now)
                queued += 1
        if not events:
            break
        feed_seq = events[-1].seq
        await uow.webhooks.advance_feed(endpoint_id, feed_seq)


async def _record(delivery: WebhookDelivery, claimed: Claimed, result: SendResult, now: datetime) -> None:
    # Giving up disables the endpoint: an event the partner sees as made by the delivery job.
    async with UnitOfWork(delivery.database, actor=Actor.system(PARTNER_WEBHOOKS)) as uow:
        await uow.partners.lock(claimed.delivery.partner_id)
        current = await uow.webhooks.delivery(claimed.delivery.id)
        if current is None or current.claim != claimed.claim:
            return  # the endpoint was deleted, or a crash-recovered claim took over: theirs counts
        number = current.attempts + 1
        await uow.webhooks.record_attempt(
            "wha_" + secrets.token_hex(12),
            current.id,
            Attempt(
                number=number,
                manual=claimed.manual,
                started_at=now,
                duration_ms=result.duration_ms,
                status_code=result.status_code,
                response_excerpt=result.excerpt,
                error=result.error,
                succeeded=result.succeeded,
            ),
        )
        first: datetime | None = current.first_attempt_at
        next_at: datetime | None = current.next_attempt_at
        completed: datetime | None = current.completed_at
        status = current.status
        if result.succeeded:
            status, next_at, completed = DeliveryStatus.SUCCEEDED, None, now
        elif not claimed.manual and current.status is DeliveryStatus.PENDING:
            # A failed redelivery changes nothing in the delivery's own schedule; this is the schedule.
            first = first or now
            next_at = delivery.policy.next_attempt(first, number, now)
            status, completed = (DeliveryStatus.PENDING, None) if next_at else (DeliveryStatus.FAILED, now)
        await uow.webhooks.settle(
            current.id,
            status=status,
            attempts=number,
            first_attempt_at=first,
            next_attempt_at=next_at,
            completed_at=completed,
            manual=claimed.manual,
        )
        if status is DeliveryStatus.FAILED and current.status is DeliveryStatus.PENDING:
            await _give_up(uow, delivery.policy, current, result, now)


async def _give_up(
    uow: UnitOfWork, policy: RetryPolicy, given_up: Delivery, result: SendResult, now: datetime
) -> None:
    """Retried for the whole window: disable the endpoint and tell the partner on its feed."""
    endpoint_id = given_up.endpoint_id
    stored = await uow.webhooks.endpoint(endpoint_id)
    if stored is None or stored.endpoint.status is EndpointStatus.DISABLED:
        return
    last = f"HTTP {result.status_code}" if result.status_code is not None else (result.error or "no answer")
    reason = (
        f"Event {given_up.event_type} (evt_{given_up.event_id}) was not delivered within "
        f"{policy.window.days} days; last attempt: {last}"
    )
    await uow.webhooks.disable(endpoint_id, now, reason)
    uow.collect(
        endpoint_event(
            stored.endpoint,
            EndpointChange.DISABLED,
            now,
            reason="failing",
            message=reason,
            delivery_id=given_up.id,
        )
    )
