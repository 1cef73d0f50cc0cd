"""Partner webhook delivery as job-engine tasks (registered in app/jobs.py): procrastinate workers on
PostgreSQL, the in-process runner on SQLite.

- `deliver_endpoint` takes one endpoint forward (resolvers.webhook_deliveries.deliver_endpoint: feed
  order, claims, backoff, giving up), then queues itself again: at once if it stopped with work left,
  else for when the endpoint's next retry is due, so a retry runs at its time without any polling.
- `deliver_due` queues `deliver_endpoint` for every endpoint with work now (new feed events, a retry
  or a redelivery due). `licensing serve` queues it when the feed commits and on a timer.
- redeliverWebhook queues `deliver_endpoint` for its endpoint at once.

Each queued job holds a lock named after its endpoint (one for "now", one for "later"): while one is
waiting, queueing the same again is a no-op, so a burst of events makes one job, not one per event. Two
jobs of one endpoint running at once are safe: the deliveries' claims decide who sends what.
"""

from __future__ import annotations

from persistence.unit_of_work import UnitOfWork
from resolvers.jobs import Job, JobQueue
from resolvers.webhook_deliveries import MAX_ATTEMPTS_PER_CALL, WebhookDelivery, deliver_endpoint

# Task names, as registered in app/jobs.py.
DELIVER_ENDPOINT = "webhooks.deliver_endpoint"
DELIVER_DUE = "webhooks.deliver_due"
DUE_LOCK = "webhooks:due"


def endpoint_lock(endpoint_id: str, *, later: bool = False) -> str:
    return f"webhooks:{endpoint_id}:{'later' if later else 'now'}"


async def queue_endpoint(queue: JobQueue, endpoint_id: str) -> None:
    """Deliver what is due to the endpoint as soon as a worker is free."""
    await queue.defer_once(DELIVER_ENDPOINT, lock=endpoint_lock(endpoint_id), endpoint_id=endpoint_id)


async def deliver_endpoint_job(job: Job, *, endpoint_id: str) -> None:
    delivery = job.webhooks
    if delivery is None:
        return
    made = await deliver_endpoint(delivery, endpoint_id)
    if made >= MAX_ATTEMPTS_PER_CALL:
        await queue_endpoint(job.queue, endpoint_id)  # it stopped with work left
        return
    await _queue_next_retry(job.queue, delivery, endpoint_id)


async def _queue_next_retry(queue: JobQueue, delivery: WebhookDelivery, endpoint_id: str) -> None:
    async with UnitOfWork(delivery.database, read_only=True) as uow:
        head = await uow.webhooks.head(endpoint_id)
    if head is None or head.next_attempt_at is None:
        return
    wait = (head.next_attempt_at - delivery.clock.now()).total_seconds()
    await queue.defer_once(
        DELIVER_ENDPOINT,
        lock=endpoint_lock(endpoint_id, later=True),
        delay_seconds=max(0.0, wait),
        endpoint_id=endpoint_id,
    )


async def deliver_due(job: Job) -> None:
    """Queue a delivery job for every endpoint with work now."""
    delivery = job.webhooks
    if delivery is None:
        return
    async with UnitOfWork(delivery.database, read_only=True) as uow:
        endpoint_ids = await uow.webhooks.endpoints_with_work(delivery.clock.now())
    for endpoint_id in endpoint_ids:
        await queue_endpoint(job.queue, endpoint_id)
