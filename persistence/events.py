"""The event table: every change to a license, standing or invoice, committed with the change itself.

Each partner's events carry a sequence number taken under the partner's row lock, so a reader that
has seen (partner, seq) can never later find a smaller seq committing behind it
(docs/rules.md, "The event feed").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    Row,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.actors import UNKNOWN_ACTOR, Actor
from persistence.metadata import metadata
from persistence.partners import PartnerRepository
from persistence.types import UTCDateTime

FEED_CHANNEL = "licensing_events"

events = Table(
    "events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("partner_id", String(32), ForeignKey("partners.id"), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("stream", String(16), nullable=False),  # license | standing | invoice
    Column("subject", String(128), nullable=False),  # license key, partner id or invoice id
    Column("action", String(32), nullable=False),
    Column("from_state", String(32), nullable=True),
    Column("to_state", String(32), nullable=True),
    Column("at", UTCDateTime(), nullable=False),
    # Who did it (domain.actors): a token (its id, its label then, its partner: null for staff) or a job.
    Column("actor_token_id", String(32), nullable=True),
    Column("actor_label", String(200), nullable=True),
    Column("actor_partner_id", String(32), nullable=True),
    Column("actor_job", String(32), nullable=True),
    Column("request_id", String(64), nullable=True),
    Column("payload", Text, nullable=False, server_default="{}"),
    UniqueConstraint("partner_id", "seq", name="uq_events_partner_seq"),
    Index("ix_events_stream_subject", "stream", "subject"),
    # The audit log: newest first per partner, or by the token that acted.
    Index("ix_events_partner_id", "partner_id", "id"),
    Index("ix_events_actor_token", "actor_token_id", "id"),
)


@dataclass(frozen=True)
class RecordedEvent:
    id: int
    partner_id: str
    seq: int
    stream: str
    subject: str
    action: str
    from_state: str | None
    to_state: str | None
    at: datetime
    actor_token_id: str | None
    request_id: str | None
    payload: dict[str, Any]
    actor: Actor = UNKNOWN_ACTOR


@dataclass(frozen=True)
class NewEvent:
    """What a use case records; the log stamps the sequence number."""

    partner_id: str
    stream: str
    subject: str
    action: str
    at: datetime
    from_state: str | None = None
    to_state: str | None = None
    actor: Actor = UNKNOWN_ACTOR
    request_id: str | None = None
    payload: dict[str, Any] | None = None


class EventLog:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection
        self._partners = PartnerRepository(connection)
        self.touched_partners: set[str] = set()

    async def append(self, event: NewEvent) -> int:
        """Record one event in the current transaction; returns its per-partner sequence number."""
        seq = await self._partners.next_event_seq(event.partner_id)
        await self._connection.execute(
            events.insert().values(
                partner_id=event.partner_id,
                seq=seq,
                stream=event.stream,
                subject=event.subject,
                action=event.action,
                from_state=event.from_state,
                to_state=event.to_state,
                at=event.at,
                actor_token_id=event.actor.token_id,
                actor_label=event.actor.label,
                actor_partner_id=event.actor.token_partner_id,
                actor_job=event.actor.job,
                request_id=event.request_id,
                payload=json.dumps(event.payload or {}, sort_keys=True),
            )
        )
        if self._connection.dialect.name == "postgresql" and event.partner_id not in self.touched_partners:
            # Delivered at commit (and dropped on rollback) to every worker listening on the channel.
            await self._connection.execute(select(func.pg_notify(FEED_CHANNEL, event.partner_id)))
        self.touched_partners.add(event.partner_id)
        return seq

    async def for_subjects(self, partner_id: str, stream: str, subjects: list[str]) -> list[RecordedEvent]:
        """Events of several subjects in one statement, oldest first."""
        if not subjects:
            return []
        rows = await self._connection.execute(
            select(events)
            .where(
                events.c.partner_id == partner_id,
                events.c.stream == stream,
                events.c.subject.in_(subjects),
            )
            .order_by(events.c.seq)
        )
        return [to_event(row) for row in rows]

    async def after(self, partner_id: str, seq: int, limit: int = 500) -> list[RecordedEvent]:
        """The partner's events with a sequence number above `seq`, in order (the feed's cursor read)."""
        rows = await self._connection.execute(
            select(events)
            .where(events.c.partner_id == partner_id, events.c.seq > seq)
            .order_by(events.c.seq)
            .limit(limit)
        )
        return [to_event(row) for row in rows]

    async def latest_seq(self, partner_id: str) -> int:
        result = await self._connection.execute(
            select(func.coalesce(func.max(events.c.seq), 0)).where(events.c.partner_id == partner_id)
        )
        return int(result.scalar_one())


def to_event(row: Row[Any]) -> RecordedEvent:
    """A row of the event table (every column selected) as a recorded event."""
    return RecordedEvent(
        id=row.id,
        partner_id=row.partner_id,
        seq=row.seq,
        stream=row.stream,
        subject=row.subject,
        action=row.action,
        from_state=row.from_state,
        to_state=row.to_state,
        at=row.at,
        actor_token_id=row.actor_token_id,
        request_id=row.request_id,
        payload=json.loads(row.payload),
        actor=Actor(row.actor_token_id, row.actor_label, row.actor_partner_id, row.actor_job),
    )
