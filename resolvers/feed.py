"""The event feed: follow a partner's events from a cursor, and the three subscriptions built on it.

Replay what was missed, then go live, in order. A cursor is the partner's event sequence number
(opaque to clients); every subscription item carries one, and any of them resumes any subscription.
Every read here is its own short unit of work: nothing holds a connection while waiting for events.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from domain.errors import DomainError, ErrorCode
from domain.invoices import Invoice
from domain.standing import Standing
from persistence.database import Database
from persistence.events import RecordedEvent
from persistence.pagination import CursorCodec, cursor_position
from persistence.reads import next_read
from persistence.unit_of_work import UnitOfWork
from resolvers.context import RequestContext

BATCH = 500
MAX_WATCHED_KEYS = 100
T = TypeVar("T")
FEED_CURSOR = CursorCodec("feed", [cursor_position], field="since", source="event feed")


async def follow_events(
    database: Database,
    partner_id: str,
    *,
    after_seq: int,
    wanted: Callable[[RecordedEvent], bool] = lambda _event: True,
    poll_seconds: float | None = None,
    on_delivery: Callable[[float], None] | None = None,
    hand_off: Callable[[int], bool] | None = None,
) -> AsyncGenerator[RecordedEvent, None]:
    """Yield the partner's events with seq > after_seq forever: no gap, no duplicate.

    Sequence numbers are taken under the partner's lock, so they commit in order and a cursor read
    never skips an event that commits later. Wake-ups only shorten the wait; the poll is the fallback:
    the signal's shared one per partner (`poll_seconds` None), or this follower's own timer.
    `on_delivery(lag)` is told, for each event read after a wake-up, the seconds since that wake-up
    (the replay before going live has none). Once caught up, `hand_off(after_seq)` may take over the
    following from there (returning True): the stream then ends.
    """
    signal = database.signal
    woken_at: float | None = None  # the wake-up that led to this read
    with signal.waiter(partner_id, poll=poll_seconds is None) as woken:
        while True:
            woken.clear()  # before reading: a commit after the read sets it again
            batch = await _shared_reads(database).after(partner_id, after_seq, signal.generation(partner_id))
            for event in batch:
                after_seq = event.seq
                if wanted(event):
                    if woken_at is not None and on_delivery is not None:
                        on_delivery(time.monotonic() - woken_at)
                    yield event
            if len(batch) == BATCH:
                continue
            if hand_off is not None and hand_off(after_seq):
                return
            if poll_seconds is None:
                await woken.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(poll_seconds):
                        await woken.wait()
            woken_at = woken.woken_at if woken.is_set() else None


@dataclass(slots=True, eq=False)
class LiveFollower:
    """A subscription caught up with its partner's feed, handed to the partner's live tail
    (app.live_tail): one task reads the partner's events and delivers them to every follower.

    `item(event)` makes what the subscription yields for an event it wants (None: nothing); followers
    with the same `kind` make the same item of an event, so it is made once for all of them."""

    partner_id: str
    after_seq: int
    wanted: Callable[[RecordedEvent], bool]
    item: Callable[[RecordedEvent], Awaitable[object | None]]
    kind: Hashable
    on_delivery: Callable[[float], None] = field(default=lambda _lag: None)


# Set by the transport for the operation running in this task: takes a caught-up follower (True) or
# not (False: the subscription keeps following on its own). Unset: nothing is handed off.
LIVE_TAIL: ContextVar[Callable[[LiveFollower], bool] | None] = ContextVar("live_tail", default=None)


async def read_after(database: Database, partner_id: str, seq: int) -> list[RecordedEvent]:
    """The partner's next batch after `seq`, shared with every reader asking after the same wake-up."""
    signal = database.signal
    return await _shared_reads(database).after(partner_id, seq, signal.generation(partner_id))


class SharedReads:
    """Followers of one partner woken by the same commit ask for the same batch: read it once.

    A read is shared only by followers that observed the same wake-up generation before asking, and it
    starts after the first of them observed it, so it sees every commit that generation announced: a
    thousand followers cost one query per commit instead of a thousand, with no gap.
    """

    def __init__(self, database: Database) -> None:
        self._database = database
        self._reading: dict[tuple[str, int, tuple[int, int]], SharedRead] = {}

    async def after(self, partner_id: str, seq: int, generation: tuple[int, int]) -> list[RecordedEvent]:
        key = (partner_id, seq, generation)
        read = self._reading.get(key)
        if read is None:
            read = self._reading[key] = SharedRead()
            # Its own task: a follower that leaves must not cancel the read the others wait for.
            task = asyncio.ensure_future(self._read(partner_id, seq, read))
            task.add_done_callback(lambda _task: self._reading.pop(key, None))
        await read.done.wait()
        if read.error is not None:
            raise read.error
        return read.events

    async def _read(self, partner_id: str, seq: int, read: SharedRead) -> None:
        try:
            async with UnitOfWork(self._database, read_only=True) as uow:
                read.events = await uow.events.after(partner_id, seq, limit=BATCH)
        except Exception as error:
            read.error = error
        finally:
            read.done.set()


class SharedRead:
    """One batch read that several followers wait for (an Event: cheaper than a Future per follower)."""

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.events: list[RecordedEvent] = []
        self.error: Exception | None = None


class InFlight:
    """Reads of the same thing for the same event share the one under way (subscribers woken by one
    commit each want the standing or invoice as it is after it): one query instead of one each.

    The read runs in its own task, so a subscriber that leaves does not cancel it for the others; it
    started after the event was read, so it shows at least that event's effect."""

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Future[Any]] = {}

    async def read(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        task = self._running.get(key)
        if task is None:
            task = self._running[key] = asyncio.ensure_future(load())
            task.add_done_callback(lambda done: self._finished(key, done))
        result: T = await asyncio.shield(task)
        return result

    def _finished(self, key: Hashable, task: asyncio.Future[Any]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled():
            task.exception()  # raised to every waiter; never "never retrieved"


_SHARED_READS: weakref.WeakKeyDictionary[Database, SharedReads] = weakref.WeakKeyDictionary()
_IN_FLIGHT: weakref.WeakKeyDictionary[Database, InFlight] = weakref.WeakKeyDictionary()


def _in_flight(database: Database) -> InFlight:
    reads = _IN_FLIGHT.get(database)
    if reads is None:
        reads = _IN_FLIGHT[database] = InFlight()
    return reads


def _shared_reads(database: Database) -> SharedReads:
    reads = _SHARED_READS.get(database)
    if reads is None:
        reads = _SHARED_READS[database] = SharedReads(database)
    return reads


async def latest_seq(database: Database, partner_id: str) -> int:
    """The partner's current cursor: subscribing from here yields only what happens next."""
    return await next_read(database).read(
        ("latest_seq", partner_id), partial(_latest_seq, database, partner_id)
    )


async def _latest_seq(database: Database, partner_id: str) -> int:
    async with UnitOfWork(database, read_only=True) as uow:
        return await uow.events.latest_seq(partner_id)


# -- cursors ------------------------------------------------------------------------------------


def encode_feed_cursor(seq: int) -> str:
    """The opaque cursor of the partner's event number `seq` (0: before the first event)."""
    return FEED_CURSOR.encode([seq])


def decode_feed_cursor(cursor: str) -> int:
    """The sequence number inside a cursor; anything that is not one of ours is INVALID_INPUT."""
    seq: int = FEED_CURSOR.decode(cursor)[0]
    return seq


async def current_cursor(ctx: RequestContext) -> str:
    """The caller's feed position now: read state, then subscribe `since` this to miss nothing."""
    return encode_feed_cursor(await latest_seq(ctx.database, ctx.partner_id()))


async def _starting_seq(database: Database, partner_id: str, since: str | None) -> int:
    """Where a subscription starts: after `since`, or (omitted) after the latest committed event."""
    latest = await latest_seq(database, partner_id)
    if since is None:
        return latest
    seq = decode_feed_cursor(since)
    if seq > latest:
        # Not a position this partner's feed has reached: resuming from it would skip events.
        raise DomainError(ErrorCode.INVALID_INPUT, "'since' is not a cursor from this event feed.", "since")
    return seq


# -- subscriptions ------------------------------------------------------------------------------


async def follow_items(
    ctx: RequestContext,
    after_seq: int,
    wanted: Callable[[RecordedEvent], bool],
    item: Callable[[RecordedEvent], Awaitable[T | None]],
    kind: Hashable,
    poll_seconds: float | None,
) -> AsyncGenerator[T, None]:
    """A subscription's items: the replay from its cursor, then live ones; once caught up it is handed
    to the partner's live tail when the transport offers one (LIVE_TAIL) and follows on its own
    otherwise (or with its own poll timer)."""
    partner_id = ctx.partner_id()
    take = LIVE_TAIL.get() if poll_seconds is None else None

    def hand_off(seq: int) -> bool:
        assert take is not None
        follower = LiveFollower(partner_id, seq, wanted, item, kind, ctx.observer.feed_delivered)
        return take(follower)

    feed = follow_events(
        ctx.database,
        partner_id,
        after_seq=after_seq,
        wanted=wanted,
        poll_seconds=poll_seconds,
        on_delivery=ctx.observer.feed_delivered,
        hand_off=None if take is None else hand_off,
    )
    async with contextlib.aclosing(feed):
        async for event in feed:
            made = await item(event)
            if made is not None:
                yield made


@dataclass(frozen=True)
class StandingChange:
    """A standing event (none for the snapshot sent on subscribing) and the standing when delivered."""

    seq: int
    event: RecordedEvent | None
    standing: Standing


@dataclass(frozen=True)
class InvoiceUpdate:
    """An invoice event and the invoice as it is when delivered."""

    seq: int
    event: RecordedEvent
    invoice: Invoice


async def license_events(
    ctx: RequestContext,
    *,
    keys: Sequence[str] | None,
    since: str | None,
    convert: Callable[[RecordedEvent], T],
    poll_seconds: float | None = None,
) -> AsyncGenerator[T, None]:
    """The caller's license events (each as `convert` makes it), optionally only for `keys`; checks the
    arguments before streaming.

    Another partner's key is never refused (that would tell whether it exists): it simply never
    matches, because the stream only ever holds the caller's own partner's events.
    """
    partner_id = ctx.partner_id()
    watched = _watched_keys(keys)
    after_seq = await _starting_seq(ctx.database, partner_id, since)

    def wanted(event: RecordedEvent) -> bool:
        return event.stream == "license" and (watched is None or event.subject in watched)

    async def item(event: RecordedEvent) -> T:
        return convert(event)

    return follow_items(ctx, after_seq, wanted, item, ("license", convert), poll_seconds)


async def standing_changes(
    ctx: RequestContext,
    *,
    since: str | None,
    convert: Callable[[StandingChange, str], T],
    poll_seconds: float | None = None,
) -> AsyncGenerator[T, None]:
    """The caller's standing each time it moves (as `convert(change, partner_id)` makes it); without
    `since`, first the standing as it is now."""
    partner_id = ctx.partner_id()
    after_seq = await _starting_seq(ctx.database, partner_id, since)
    reads = _in_flight(ctx.database)

    async def item(event: RecordedEvent) -> T:
        standing = await reads.read(
            ("standing", partner_id, event.seq), partial(_standing, ctx.database, partner_id)
        )
        return convert(StandingChange(event.seq, event, standing), partner_id)

    async def stream() -> AsyncGenerator[T, None]:
        if since is None:
            # Read after the cursor: a move committing in between is delivered again, never lost.
            now = await _standing(ctx.database, partner_id)
            yield convert(StandingChange(after_seq, None, now), partner_id)
        changes = follow_items(
            ctx, after_seq, _stream_is("standing"), item, ("standing", convert), poll_seconds
        )
        async with contextlib.aclosing(changes):
            async for change in changes:
                yield change

    return stream()


async def invoice_updates(
    ctx: RequestContext,
    *,
    since: str | None,
    convert: Callable[[InvoiceUpdate], T],
    poll_seconds: float | None = None,
) -> AsyncGenerator[T, None]:
    """The caller's invoices (as `convert` makes them) each time one is finalized, paid, fails a charge
    or is voided."""
    partner_id = ctx.partner_id()
    after_seq = await _starting_seq(ctx.database, partner_id, since)
    reads = _in_flight(ctx.database)

    async def item(event: RecordedEvent) -> T | None:
        invoice = await reads.read(
            ("invoice", partner_id, event.seq),
            partial(_invoice, ctx.database, partner_id, event.subject),
        )
        return None if invoice is None else convert(InvoiceUpdate(event.seq, event, invoice))

    return follow_items(ctx, after_seq, _stream_is("invoice"), item, ("invoice", convert), poll_seconds)


def _stream_is(stream: str) -> Callable[[RecordedEvent], bool]:
    return lambda event: event.stream == stream


def _watched_keys(keys: Sequence[str] | None) -> frozenset[str] | None:
    if keys is None:
        return None
    if not 1 <= len(keys) <= MAX_WATCHED_KEYS:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"Watch 1 to {MAX_WATCHED_KEYS} keys, or omit 'keys' to watch every license.",
            "keys",
        )
    return frozenset(keys)


async def _invoice(database: Database, partner_id: str, invoice_id: str) -> Invoice | None:
    async with UnitOfWork(database, read_only=True) as uow:
        return await uow.invoices.get(partner_id, invoice_id)


async def _standing(database: Database, partner_id: str) -> Standing:
    async with UnitOfWork(database, read_only=True) as uow:
        standing = await uow.standing.get(partner_id)
    if standing is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such partner.")
    return standing
