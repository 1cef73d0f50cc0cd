"""The event feed: readers follow a partner's events from a cursor and are woken when new ones commit.

The table is the truth; wake-ups are only hints. On PostgreSQL a `NOTIFY` sent in the writing
transaction reaches every worker's listener at commit; on SQLite the unit of work wakes readers in
this process after commit. A reader that misses a hint still catches up on its next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

import asyncpg
from sqlalchemy.engine import make_url

from persistence.events import FEED_CHANNEL

log = logging.getLogger("licensing.feed")
LISTENER_NAME = "licensing-feed-listener"


# A wake-up is only a hint: every key that has waiters is also woken this often (its readers re-read).
POLL_SECONDS = 5.0


class Waiter(asyncio.Event):
    """A reader's wake-up, stamped with when it came (`time.monotonic()`), for the feed-lag metric."""

    woken_at = 0.0
    # The subscriptions this waiter wakes: 1, or a partner's live tail's count (app.live_tail).
    followers = 1

    def set(self) -> None:
        if not self.is_set():
            self.woken_at = time.monotonic()
        super().set()


class FeedSignal:
    """In-process wake-ups, per partner. `wake(None)` wakes everyone (after a lost listener reconnects).

    The fallback poll is one timer per key with waiters (`poll_seconds`), not one per waiter: a
    thousand followers of a partner re-read together, in one shared read, instead of each on its own
    clock (a thousand reads every few seconds, and a timer to reset on every wake-up)."""

    def __init__(self, poll_seconds: float = POLL_SECONDS) -> None:
        self.poll_seconds = poll_seconds
        self._waiters: dict[str, set[Waiter]] = defaultdict(set)
        # Counts wake-ups, so readers woken by the same one can share a read (see `generation`).
        self._epoch = 0
        self._generations: dict[str, int] = defaultdict(int)
        # Told of every wake-up (the webhook dispatcher); not counted as waiters.
        self._listeners: list[Callable[[str | None], None]] = []
        self._polls: dict[str, asyncio.TimerHandle] = {}

    def on_wake(self, listener: Callable[[str | None], None]) -> Callable[[], None]:
        """Call `listener` with the key of every wake-up; returns what stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def wake(self, partner_id: str | None) -> None:
        for listener in self._listeners:
            listener(partner_id)
        if partner_id is None:
            self._epoch += 1
        else:
            self._generations[partner_id] += 1
        groups = self._waiters.values() if partner_id is None else [self._waiters.get(partner_id, set())]
        for waiters in groups:
            for waiter in waiters:
                waiter.set()

    @contextlib.contextmanager
    def waiter(self, partner_id: str, *, poll: bool = False) -> Iterator[Waiter]:
        """An event set at each wake-up of the key; with `poll`, also every `poll_seconds`."""
        event = Waiter()
        self._waiters[partner_id].add(event)
        if poll and partner_id not in self._polls:
            self._schedule_poll(partner_id)
        try:
            yield event
        finally:
            self._waiters[partner_id].discard(event)
            if not self._waiters[partner_id]:
                del self._waiters[partner_id]
                handle = self._polls.pop(partner_id, None)
                if handle is not None:
                    handle.cancel()

    def _schedule_poll(self, partner_id: str) -> None:
        loop = asyncio.get_running_loop()
        self._polls[partner_id] = loop.call_later(self.poll_seconds, self._poll, partner_id)

    def _poll(self, partner_id: str) -> None:
        if partner_id in self._waiters:
            self.wake(partner_id)
            self._schedule_poll(partner_id)
        else:
            self._polls.pop(partner_id, None)

    def generation(self, partner_id: str) -> tuple[int, int]:
        """Which wake-ups of this partner have happened: a read started after observing a generation
        sees every commit that woke readers up to it."""
        return self._epoch, self._generations[partner_id]

    def waiting(self, *, excluding_prefix: str | None = None) -> int:
        """How many followers wait, optionally leaving out the keys with a prefix (e.g. tokens')."""
        return sum(
            sum(waiter.followers for waiter in waiters)
            for key, waiters in self._waiters.items()
            if excluding_prefix is None or not key.startswith(excluding_prefix)
        )


class PostgresListener:
    """LISTENs on one dedicated connection and turns notifications into wake-ups; reconnects when lost."""

    def __init__(self, database_url: str, signal: FeedSignal, *, retry_seconds: float = 0.5) -> None:
        self._dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._signal = signal
        self._retry_seconds = retry_seconds
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.backend_pid: int | None = None
        self.reconnects = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="licensing-feed-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self._listen_until_lost()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                log.warning("feed listener lost its connection (%s); reconnecting", error)
            self.connected.clear()
            self.reconnects += 1
            await asyncio.sleep(self._retry_seconds)

    async def _listen_until_lost(self) -> None:
        # Named per process, so operators (and the multi-worker test) can find each worker's listener.
        connection = await asyncpg.connect(
            self._dsn, server_settings={"application_name": f"{LISTENER_NAME} pid={os.getpid()}"}
        )
        lost = asyncio.Event()
        try:
            connection.add_termination_listener(lambda _connection: lost.set())
            await connection.add_listener(FEED_CHANNEL, self._on_notify)
            self.backend_pid = connection.get_server_pid()
            self.connected.set()
            # Whatever committed while we were not listening: every reader re-reads its cursor.
            self._signal.wake(None)
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), timeout=5)
                if not lost.is_set():
                    await connection.execute("SELECT 1")  # notice a silently dead socket
        finally:
            with contextlib.suppress(Exception):
                await connection.close(timeout=1)

    def _on_notify(self, _connection: object, _pid: int, _channel: str, partner_id: str) -> None:
        self._signal.wake(partner_id)
