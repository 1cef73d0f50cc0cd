"""Partner webhooks in the processes that run jobs: how they are sent (`webhook_delivery`, from the
settings), and, inside `licensing serve`, what tells the job engine to look for due work
(`WebhookDispatcher`): the feed committing something, and a timer (a sandbox clock moved, a missed
wake-up). The delivery itself is a job-engine task (resolvers/webhook_jobs.py): procrastinate workers on
PostgreSQL, the in-process runner on SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta

from app.settings import Settings
from domain.clock import Clock
from persistence.database import Database
from persistence.tokens import TOKEN_SIGNAL_PREFIX
from resolvers.jobs import JobQueue
from resolvers.webhook_deliveries import CLAIM_FOR, WebhookDelivery
from resolvers.webhook_jobs import DELIVER_DUE, DUE_LOCK
from resolvers.webhook_sending import AddressLookup, HttpWebhookSender

log = logging.getLogger("licensing.webhooks")


def webhook_delivery(
    settings: Settings, database: Database, clock: Clock, lookup: AddressLookup | None = None
) -> tuple[WebhookDelivery, HttpWebhookSender]:
    """Delivery as the settings say, and its sender (close it when done)."""
    sender = HttpWebhookSender(
        lookup or AddressLookup(dict(settings.webhook_resolve)),
        sandbox=settings.sandbox,
        timeout_seconds=settings.webhook_timeout_seconds,
    )
    delivery = WebhookDelivery(
        database,
        sender,
        clock,
        sandbox=settings.sandbox,
        # A claim outlives an attempt's deadline: only a crashed sender's claim ever runs out.
        claim_for=max(CLAIM_FOR, timedelta(seconds=2 * settings.webhook_timeout_seconds)),
    )
    return delivery, sender


class WebhookDispatcher:
    """Queues the look for due webhook work (one job at most waiting: the queueing lock) when woken
    by the feed and every `poll_seconds`; it sends nothing itself."""

    def __init__(self, database: Database, queue: JobQueue, *, poll_seconds: float) -> None:
        self._database = database
        self._queue = queue
        self._poll_seconds = poll_seconds
        self._woken = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stop_listening = lambda: None

    def start(self) -> None:
        self._stop_listening = self._database.signal.on_wake(self._on_wake)
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
            self._woken.clear()  # before queueing: a commit after it wakes the next one
            try:
                await self._queue.defer_once(DELIVER_DUE, lock=DUE_LOCK)
            except Exception:  # the next wake-up or tick queues it again
                log.exception("could not queue the look for due webhooks")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_seconds):
                    await self._woken.wait()
