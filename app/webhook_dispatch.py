"""Runs webhook delivery inside `licensing serve`: one asyncio task per worker that calls the delivery
use case (resolvers.webhook_deliveries.deliver_due) when the event feed commits something and on a timer
(retries coming due). It holds no state of its own: the database says what is due and who has claimed
what, so any number of workers, or a job engine calling the same use case instead, deliver each event
in order and at least once."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from persistence.database import Database
from persistence.tokens import TOKEN_SIGNAL_PREFIX
from resolvers.webhook_deliveries import WebhookDelivery, deliver_due

log = logging.getLogger("licensing.webhooks")


class WebhookDispatcher:
    def __init__(self, delivery: WebhookDelivery, *, poll_seconds: float) -> None:
        self._delivery = delivery
        self._poll_seconds = poll_seconds
        self._woken = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stop_listening = lambda: None

    @property
    def database(self) -> Database:
        return self._delivery.database

    def start(self) -> None:
        self._stop_listening = self.database.signal.on_wake(self._on_wake)
        self._task = asyncio.create_task(self._run(), name="licensing-webhook-dispatcher")

    async def stop(self) -> None:
        self._stop_listening()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def wake(self) -> None:
        """Look for due work now (the feed committed, or the sandbox clock moved)."""
        self._woken.set()

    def _on_wake(self, key: str | None) -> None:
        if key is None or not key.startswith(TOKEN_SIGNAL_PREFIX):
            self._woken.set()

    async def _run(self) -> None:
        while True:
            self._woken.clear()  # before looking: a commit during the pass wakes the next one
            try:
                made = await deliver_due(self._delivery)
            except Exception:  # the next pass retries; the rows say what is left
                log.exception("webhook delivery pass failed")
                made = 0
            if made:
                continue  # a pass stops after a bounded number of attempts: there may be more
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_seconds):
                    await self._woken.wait()
