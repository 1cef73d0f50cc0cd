"""A partner's live tail: one task delivers a partner's new events to every subscription caught up with it.

A subscription starts in Strawberry's pipeline: validation, access, its cursor, the replay. Once it has
caught up with its partner's feed the pipeline hands it over (`resolvers.feed.LIVE_TAIL`) and ends.
What stays is a `LiveEntry`: its socket and operation id, the subscription's executor (document,
variables, caller) and its follower (position, filter, how an item is made). The partner's tail reads
each batch of new events once, makes each event's item once per kind, executes each distinct selection
once (`schema.fanout`) and writes the same JSON, framed with each entry's operation id, to every socket
that shares it. No task, generator or Strawberry pipeline waits per idle subscription.

Order per subscription: the tail delivers events in sequence order, and a batch only to the entries
whose position is at or after where the batch starts; an entry handed over at an older position is
caught up from there on the next turn. A write never waits for its client (uvicorn's websocket send
buffers), so a slow consumer delays nobody else.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import time
from collections.abc import Hashable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from graphql import ExecutionResult, GraphQLError

from persistence.database import Database
from persistence.events import RecordedEvent
from persistence.feed import Waiter
from resolvers.feed import BATCH, LiveFollower, read_after
from schema.fanout import FanoutExecutor, SharedData

if TYPE_CHECKING:
    from app.sockets import TokenBoundHandler

# A tail that could not read its partner's events (database unavailable) tries again after this.
RETRY_SECONDS = 1.0
log = logging.getLogger("licensing.live_tail")


class LiveEntry:
    """One subscription in its partner's live tail."""

    __slots__ = ("executor", "follower", "operation_id", "prefix", "socket")

    def __init__(
        self, socket: TokenBoundHandler, operation_id: str, follower: LiveFollower, executor: FanoutExecutor
    ) -> None:
        self.socket = socket
        self.operation_id = operation_id
        self.follower = follower
        self.executor = executor
        # A `next` frame for this operation is this prefix, the shared payload JSON and "}".
        self.prefix = f'{{"id":{json.dumps(operation_id)},"type":"next","payload":'


class PartnerTails:
    """This worker's live tails, one per partner with subscriptions caught up."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._tails: dict[str, PartnerTail] = {}

    def join(self, entry: LiveEntry) -> None:
        partner_id = entry.follower.partner_id
        tail = self._tails.get(partner_id)
        if tail is None:
            tail = self._tails[partner_id] = PartnerTail(self.database, partner_id)
        tail.join(entry)

    def leave(self, entry: LiveEntry) -> None:
        partner_id = entry.follower.partner_id
        tail = self._tails.get(partner_id)
        if tail is not None and tail.leave(entry):
            del self._tails[partner_id]

    def following(self) -> int:
        """Subscriptions delivered by a tail now."""
        return sum(len(tail.entries) for tail in self._tails.values())


class PartnerTail:
    """One partner's tail: its entries and the task that reads and delivers their events."""

    def __init__(self, database: Database, partner_id: str) -> None:
        self.database = database
        self.partner_id = partner_id
        self.entries: dict[LiveEntry, None] = {}
        # One executor per sharing key, used by every entry with that key (their results are one and
        # the same), and how many entries use it: a subscription's own executor is dropped on joining.
        self._executors: dict[Hashable, tuple[FanoutExecutor, int]] = {}
        # Registered now, not when the task first runs: the entries count as waiting from their join.
        self._waiting: AbstractContextManager[Waiter] = database.signal.waiter(partner_id, poll=True)
        self._woken = self._waiting.__enter__()
        self._woken.followers = 0
        # Its own empty context, not that of the subscription whose hand-over started it: the tail serves
        # every subscriber of the partner and must not keep the first one's socket and executor alive.
        self._task = asyncio.create_task(
            self._run(), name=f"live-tail {partner_id}", context=contextvars.Context()
        )
        self._task.add_done_callback(self._stopped)

    def join(self, entry: LiveEntry) -> None:
        key = entry.executor.sharing_key()
        if key is not None:
            executor, users = self._executors.get(key, (entry.executor, 0))
            self._executors[key] = (executor, users + 1)
            entry.executor = executor
        self.entries[entry] = None
        self._woken.followers = len(self.entries)
        # Read again from the newcomer's position (a commit after its last read may have woken only it).
        asyncio.Event.set(self._woken)  # not Waiter.set: this is no commit's wake-up (feed-lag metric)

    def leave(self, entry: LiveEntry) -> bool:
        """Remove an entry; True when the tail is empty and stopped."""
        if entry not in self.entries:
            return False
        del self.entries[entry]
        key = entry.executor.sharing_key()
        if key is not None:
            executor, users = self._executors[key]
            if users > 1:
                self._executors[key] = (executor, users - 1)
            else:
                del self._executors[key]
        self._woken.followers = len(self.entries)
        if self.entries:
            return False
        self._task.cancel()
        return True

    def _stopped(self, task: asyncio.Task[None]) -> None:
        self._waiting.__exit__(None, None, None)
        if not task.cancelled() and task.exception() is not None:
            log.error("live tail of %s stopped", self.partner_id, exc_info=task.exception())

    async def _run(self) -> None:
        woken = self._woken
        seen_stamp = woken.woken_at
        woken_at: float | None = None  # the commit's wake-up that led to this read
        while self.entries:
            woken.clear()  # before reading: a commit after the read sets it again
            start = min(entry.follower.after_seq for entry in self.entries)
            try:
                batch = await read_after(self.database, self.partner_id, start)
            except Exception:
                log.warning("could not read %s's events; retrying", self.partner_id, exc_info=True)
                await asyncio.sleep(RETRY_SECONDS)
                continue
            for event in batch:
                await self._deliver(event, start, woken_at)
            if len(batch) == BATCH:
                continue
            await woken.wait()
            stamp = woken.woken_at
            woken_at = stamp if stamp != seen_stamp else None
            seen_stamp = stamp

    async def _deliver(self, event: RecordedEvent, start: int, woken_at: float | None) -> None:
        """Send one event to every entry that follows it from this batch on, in order."""
        items: dict[Hashable, Any] = {}
        payloads: dict[Hashable, str] = {}
        lag = None if woken_at is None else time.monotonic() - woken_at
        for entry in list(self.entries):
            follower = entry.follower
            if not start <= follower.after_seq < event.seq or entry not in self.entries:
                continue
            follower.after_seq = event.seq
            if not follower.wanted(event):
                continue
            if lag is not None:
                follower.on_delivery(lag)
            if follower.kind not in items:
                try:
                    items[follower.kind] = await follower.item(event)
                except Exception as error:
                    items[follower.kind] = _Failed(error)
            item = items[follower.kind]
            if item is None or entry not in self.entries:
                continue
            if isinstance(item, _Failed):
                await entry.socket.end_live(entry.operation_id, item.result())
                continue
            await self._send(entry, item, payloads)

    async def _send(self, entry: LiveEntry, item: object, payloads: dict[Hashable, str]) -> None:
        """Execute the entry's selection for an item (once per sharing key in this event) and send it."""
        key = entry.executor.sharing_key()
        payload = None if key is None else payloads.get(key)
        if payload is not None:
            entry.executor.count_reuse()
        else:
            result = entry.executor.run_event(item)
            if not isinstance(result, ExecutionResult):
                result = await result
            data = result.data
            if result.errors or type(data) is not SharedData:
                await entry.socket.send_live_result(entry.operation_id, result)
                return
            if data.encoded is None:
                data.encoded = json.dumps({"data": data}, separators=(",", ":"))
            payload = data.encoded
            if key is not None:
                payloads[key] = payload
        await entry.socket.send_live(entry, entry.prefix + payload + "}")


class _Failed:
    """Making an event's item failed (e.g. its standing could not be read): its subscriptions end."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error

    def result(self) -> ExecutionResult:
        return ExecutionResult(None, [GraphQLError(str(self.error), original_error=self.error)])
