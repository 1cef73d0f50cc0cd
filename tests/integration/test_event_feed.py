"""The event feed: a follower replays from its cursor, then gets new events as they commit, in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from domain.partners import Partner
from persistence.database import Database
from persistence.events import NewEvent, RecordedEvent
from persistence.feed import PostgresListener
from persistence.unit_of_work import UnitOfWork
from resolvers.feed import follow_events
from resolvers.partners import new_partner_id
from tests.conftest import ON_POSTGRES

AT = datetime(2026, 7, 1, tzinfo=UTC)


async def new_partner(database: Database) -> str:
    partner = Partner(new_partner_id(), "Feed Agency", "UTC", "usd", AT)
    async with UnitOfWork(database) as uow:
        await uow.partners.add(partner)
    return partner.id


async def record(database: Database, partner_id: str, *subjects: str) -> None:
    async with UnitOfWork(database) as uow:
        for subject in subjects:
            await uow.events.append(NewEvent(partner_id, "license", subject, "issue", AT, to_state="issued"))


async def take(feed: AsyncIterator[RecordedEvent], count: int) -> list[str]:
    async def collect() -> list[str]:
        return [(await anext(feed)).subject for _ in range(count)]

    # Generous bound: the test is about delivery, not speed; without a wake-up it would wait 60 s.
    return await asyncio.wait_for(collect(), timeout=10)


async def test_follower_replays_from_its_cursor_then_goes_live(database: Database) -> None:
    partner_id = await new_partner(database)
    await record(database, partner_id, "k1", "k2", "k3")
    feed = follow_events(database, partner_id, after_seq=1, poll_seconds=60)
    assert await take(feed, 2) == ["k2", "k3"]
    live = asyncio.ensure_future(take(feed, 2))
    await asyncio.sleep(0)
    await record(database, partner_id, "k4")
    await record(database, partner_id, "k5")
    assert await live == ["k4", "k5"]
    await feed.aclose()


async def test_rolled_back_events_are_never_delivered(database: Database) -> None:
    partner_id = await new_partner(database)
    feed = follow_events(database, partner_id, after_seq=0, poll_seconds=60)
    pending = asyncio.ensure_future(take(feed, 1))
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError):
        async with UnitOfWork(database) as uow:
            await uow.events.append(NewEvent(partner_id, "license", "ghost", "issue", AT))
            raise RuntimeError("the use case failed after recording")
    await record(database, partner_id, "real")
    assert await pending == ["real"]
    await feed.aclose()


async def test_a_partner_never_sees_another_partners_events(database: Database) -> None:
    mine, theirs = await new_partner(database), await new_partner(database)
    feed = follow_events(database, mine, after_seq=0, poll_seconds=60)
    pending = asyncio.ensure_future(take(feed, 1))
    await asyncio.sleep(0)
    await record(database, theirs, "their-key")
    await record(database, mine, "my-key")
    assert await pending == ["my-key"]
    await feed.aclose()


@pytest.mark.skipif(not ON_POSTGRES, reason="cross-process NOTIFY exists only on PostgreSQL")
async def test_a_second_worker_is_woken_by_notify_and_catches_up_after_losing_its_listener(
    database: Database, database_url: str
) -> None:
    other_worker = Database(database_url)
    listener = PostgresListener(database_url, other_worker.signal, retry_seconds=0.2)
    listener.start()
    try:
        await asyncio.wait_for(listener.connected.wait(), timeout=10)
        partner_id = await new_partner(database)
        feed = follow_events(other_worker, partner_id, after_seq=0, poll_seconds=60)
        pending = asyncio.ensure_future(take(feed, 1))
        await asyncio.sleep(0.1)
        await record(database, partner_id, "via-notify")
        assert await pending == ["via-notify"]

        # Cut the listener's connection; what commits meanwhile arrives after it reconnects.
        pending = asyncio.ensure_future(take(feed, 2))
        async with database.engine.connect() as admin:
            await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": listener.backend_pid})
            await admin.commit()
        await record(database, partner_id, "while-down-1", "while-down-2")
        assert await pending == ["while-down-1", "while-down-2"]
        assert listener.reconnects >= 1
        await feed.aclose()
    finally:
        await listener.stop()
        await other_worker.dispose()


async def test_followers_of_one_partner_share_reads_and_each_gets_every_event_once(
    database: Database,
) -> None:
    partner_id = await new_partner(database)
    feeds = [follow_events(database, partner_id, after_seq=0, poll_seconds=60) for _ in range(5)]
    leaving = follow_events(database, partner_id, after_seq=0, poll_seconds=60)
    pending = [asyncio.ensure_future(take(feed, 3)) for feed in feeds]
    gone = asyncio.ensure_future(take(leaving, 3))
    await asyncio.sleep(0.05)
    await record(database, partner_id, "a")
    # Let the woken followers start their shared read, then one leaves (it may be the one that started
    # it): the read the others wait for must not be cancelled with it.
    for _ in range(3):
        await asyncio.sleep(0)
    gone.cancel()
    await record(database, partner_id, "b", "c")
    assert await asyncio.gather(*pending) == [["a", "b", "c"]] * 5
    for feed in feeds:
        await feed.aclose()
