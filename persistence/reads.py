"""Reads asked for at the same moment, made once: the answer to a connect storm.

A thousand sockets of one partner opening after a deploy each ask for the partner's latest event and
whether their token still works. `NextRead` makes the callers that ask for the same key before the read
starts share it; the read starts on the event loop's next turn, so it begins after every one of them
asked and sees every commit that any of them could have seen. A read already under way is never joined
(it may have started before the caller's question).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class NextRead:
    def __init__(self) -> None:
        self._pending: dict[Hashable, asyncio.Future[Any]] = {}

    async def read(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        future = self._pending.get(key)
        if future is None:
            loop = asyncio.get_running_loop()
            future = self._pending[key] = loop.create_future()
            loop.call_soon(self._start, key, future, load)
        # Shielded: a caller that leaves does not cancel the read the others wait for.
        result: T = await asyncio.shield(future)
        return result

    def _start(self, key: Hashable, future: asyncio.Future[Any], load: Callable[[], Awaitable[Any]]) -> None:
        if self._pending.get(key) is future:
            del self._pending[key]  # from now on a caller starts the next read
        task = asyncio.ensure_future(load())
        task.add_done_callback(lambda done: _settle(future, done))


def _settle(future: asyncio.Future[Any], task: asyncio.Future[Any]) -> None:
    if future.done():
        return
    if task.cancelled():
        future.cancel()
        return
    error = task.exception()
    if error is None:
        future.set_result(task.result())
        return
    future.set_exception(error)
    future.exception()  # raised to every caller still waiting; never "never retrieved"


_NEXT_READS: weakref.WeakKeyDictionary[Any, NextRead] = weakref.WeakKeyDictionary()


def next_read(owner: Any) -> NextRead:
    """The coalescer of an owner (a Database): each app's database has its own."""
    reads = _NEXT_READS.get(owner)
    if reads is None:
        reads = _NEXT_READS[owner] = NextRead()
    return reads
