"""Following a partner's event feed from a cursor: replay what was missed, then go live, in order."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from persistence.database import Database
from persistence.events import RecordedEvent
from persistence.unit_of_work import UnitOfWork

BATCH = 500


async def follow_events(
    database: Database,
    partner_id: str,
    *,
    after_seq: int,
    wanted: Callable[[RecordedEvent], bool] = lambda _event: True,
    poll_seconds: float = 5.0,
) -> AsyncIterator[RecordedEvent]:
    """Yield the partner's events with seq > after_seq forever: no gap, no duplicate.

    Sequence numbers are taken under the partner's lock, so they commit in order and a cursor read
    never skips an event that commits later. Wake-ups only shorten the wait; the poll is the fallback.
    """
    with database.signal.waiter(partner_id) as woken:
        while True:
            woken.clear()  # before reading: a commit after the read sets it again
            async with UnitOfWork(database, read_only=True) as uow:
                batch = await uow.events.after(partner_id, after_seq, limit=BATCH)
            for event in batch:
                after_seq = event.seq
                if wanted(event):
                    yield event
            if len(batch) == BATCH:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), timeout=poll_seconds)


async def latest_seq(database: Database, partner_id: str) -> int:
    """The partner's current cursor: subscribing from here yields only what happens next."""
    async with UnitOfWork(database, read_only=True) as uow:
        return await uow.events.latest_seq(partner_id)
