"""The audit log's reads over the event table: newest first (by the row id, the order events were
recorded in), filtered, in keyset pages for the API and in batches for the streamed CSV export."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Select, select
from sqlalchemy.ext.asyncio import AsyncConnection

from domain.audit_log import AuditFilter
from persistence.events import RecordedEvent, events, to_event
from persistence.pagination import CursorCodec, Page, SortKey, keyset_page

# Event ids are BIGINT on PostgreSQL: a cursor may carry any of them.
MAX_EVENT_ID = 2**63 - 1


def cursor_event_id(value: Any) -> int:
    """An event's row id: a whole number within SQL BIGINT."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_EVENT_ID:
        raise ValueError("not an event id")
    return value


AUDIT_CURSOR = CursorCodec("audit_log", [cursor_event_id], source="audit log")
NEWEST_FIRST = SortKey([events.c.id], AUDIT_CURSOR, descending=True)


class AuditLogReader:
    def __init__(self, connection: AsyncConnection) -> None:
        self._connection = connection

    async def page(
        self, where: AuditFilter, *, first: int | None, after: str | None, count_total: bool
    ) -> Page[RecordedEvent]:
        return await keyset_page(
            self._connection,
            _selected(where),
            NEWEST_FIRST,
            first=first,
            after=after,
            to_item=to_event,
            cursor_values=lambda row: [row.id],
            count_total=count_total,
        )

    async def batch(self, where: AuditFilter, *, before_id: int | None, limit: int) -> list[RecordedEvent]:
        """Up to `limit` entries older than the entry `before_id` (None: from the newest)."""
        statement = _selected(where)
        if before_id is not None:
            statement = statement.where(events.c.id < before_id)
        rows = await self._connection.execute(statement.order_by(events.c.id.desc()).limit(limit))
        return [to_event(row) for row in rows]


def _selected(where: AuditFilter) -> Select[Any]:
    conditions: list[ColumnElement[bool]] = []
    if where.partner_id is not None:
        conditions.append(events.c.partner_id == where.partner_id)
    if where.actor_token_id is not None:
        conditions.append(events.c.actor_token_id == where.actor_token_id)
    if where.actor_job is not None:
        conditions.append(events.c.actor_job == where.actor_job)
    if where.kinds is not None:
        conditions.append(events.c.stream.in_(sorted(where.kinds)))
    if where.actions is not None:
        conditions.append(events.c.action.in_(sorted(where.actions)))
    if where.since is not None:
        conditions.append(events.c.at >= where.since)
    if where.until is not None:
        conditions.append(events.c.at < where.until)
    return select(events).where(*conditions)
