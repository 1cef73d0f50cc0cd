"""Stripe webhook deliveries as received: deduplicated by the provider's event id, with what we did."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, String, Table, select
from sqlalchemy.ext.asyncio import AsyncConnection

from persistence.metadata import metadata
from persistence.types import UTCDateTime

webhook_events = Table(
    "webhook_events",
    metadata,
    Column("id", String(255), primary_key=True),  # the provider's event id: deliveries are deduplicated
    Column("type", String(64), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    # What was done with it: applied, ignored, rejected (did not match our invoice), refunded, ...
    Column("outcome", String(32), nullable=True),
    Column("detail", String(500), nullable=True),
)


class WebhookEventLog:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def seen(self, event_id: str) -> bool:
        found = await self._connection.execute(
            select(webhook_events.c.id).where(webhook_events.c.id == event_id)
        )
        return found.first() is not None

    async def add(
        self, event_id: str, event_type: str, at: datetime, outcome: str, detail: str | None = None
    ) -> None:
        await self._connection.execute(
            webhook_events.insert().values(
                id=event_id,
                type=event_type[:64],
                received_at=at,
                outcome=outcome,
                detail=detail[:500] if detail else None,
            )
        )

    async def outcome(self, event_id: str) -> tuple[str | None, str | None] | None:
        """(outcome, detail) of a received event, None if it never came."""
        row = (
            await self._connection.execute(
                select(webhook_events.c.outcome, webhook_events.c.detail).where(
                    webhook_events.c.id == event_id
                )
            )
        ).one_or_none()
        return None if row is None else (row.outcome, row.detail)
