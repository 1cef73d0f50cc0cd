"""What background tasks see: the queue to defer more work on, and the services a task runs with.

A task is a plain async use case `async def task(job: Job, **arguments) -> None` whose arguments are
JSON values. It must be idempotent and safe to run again after a crash at any point: the job engine
(app/jobs.py: procrastinate on PostgreSQL, an in-process runner on SQLite) delivers it at least once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, TypeAlias

from domain.actors import Actor, SystemJob
from domain.clock import Clock
from domain.payments import CollectionPolicy
from payments.gateway import PaymentGateway
from persistence.database import Database
from resolvers.observation import NO_OBSERVER, Observer

if TYPE_CHECKING:  # (resolvers.webhook_deliveries imports the request context, which imports this)
    from resolvers.webhook_deliveries import WebhookDelivery

JsonValue: TypeAlias = "dict[str, JsonValue] | list[JsonValue] | str | int | float | bool | None"


class JobQueue(Protocol):
    """Where use cases defer background work, by task name (see app/jobs.py for the registered ones)."""

    async def defer(self, task: str, **arguments: JsonValue) -> None: ...

    async def defer_many(self, task: str, arguments: Sequence[dict[str, JsonValue]]) -> None: ...

    async def defer_once(
        self, task: str, *, lock: str, delay_seconds: float = 0, **arguments: JsonValue
    ) -> None:
        """Queue the task unless a job holding `lock` is still waiting (that one will do the work), to
        run no sooner than `delay_seconds` from now."""
        ...


@dataclass(frozen=True)
class Job:
    """One run of a task: its collaborators, and the system job it acts as (domain.actors'
    `MONTH_CLOSE`, `DUNNING`, …), which is set where the task is registered (app/jobs.py) and recorded
    on its events as their actor (`recorded_as`), with `request_id` naming the job run."""

    database: Database
    gateway: PaymentGateway
    clock: Clock
    policy: CollectionPolicy
    queue: JobQueue
    actor: SystemJob
    job_id: str
    # Told of charges and month-close progress (the server's metrics, when the job runs in it).
    observer: Observer = NO_OBSERVER
    # How partner webhooks are sent (None where delivery is off: the tasks then do nothing).
    webhooks: WebhookDelivery | None = None

    @property
    def recorded_as(self) -> Actor:
        """The actor this job's events are recorded as made by."""
        return Actor.system(self.actor)

    @property
    def request_id(self) -> str:
        """What this job's events and logs carry where a request's would carry its request id."""
        return f"job:{self.actor}:{self.job_id}"

    def now_at_least(self, instant: datetime) -> datetime:
        """Now, but never before `instant` (a sandbox clock moved forward in another process)."""
        return max(self.clock.now(), instant)
