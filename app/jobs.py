"""The job engine: every background task and periodic task is registered here, once, and runs on
either engine:

- **PostgreSQL**: procrastinate (jobs are rows in its tables, fetched with `FOR UPDATE SKIP LOCKED`,
  retried with a growing pause, periodic tasks deferred by the workers themselves). `licensing worker`
  runs a worker; start as many as you like, on any host. Its schema comes from migration 0011.
- **SQLite**: the same task functions run in-process inside `licensing serve` (one at a time: SQLite
  has one writer), with the same retries; periodic tasks run from the same cron expressions.

Registering a task is one line below: a name, the use case (`async def task(job: Job, **arguments)`
in resolvers/, idempotent), the system actor it acts as, and how often to retry it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from croniter import croniter
from sqlalchemy.engine import make_url

from domain.actors import DUNNING, MONTH_CLOSE, PARTNER_WEBHOOKS, SystemJob
from domain.billing_runs import MAX_PARTNER_TRIES as PARTNER_TRIES
from domain.clock import Clock
from domain.payments import CollectionPolicy
from payments.gateway import PaymentGateway
from persistence.database import Database
from resolvers import billing_runs as runs
from resolvers import dunning
from resolvers import webhook_jobs as webhooks
from resolvers.jobs import Job, JobQueue, JsonValue
from resolvers.observation import NO_OBSERVER, Observer
from resolvers.webhook_deliveries import WebhookDelivery

log = logging.getLogger("licensing.jobs")

TaskFunction = Callable[..., Awaitable[None]]


@dataclass(frozen=True)
class TaskSpec:
    name: str
    function: TaskFunction
    # Who the task acts as: recorded with what it does (see resolvers.jobs.Job.request_id).
    actor: SystemJob
    # Deliveries after the first when it raises; the pause doubles from `retry_seconds` each time.
    retries: int = 0
    retry_seconds: int = 2
    queue: str = "default"
    # A periodic task: a cron expression (UTC); the task takes no arguments.
    cron: str | None = None


@dataclass
class TaskRegistry:
    tasks: dict[str, TaskSpec] = field(default_factory=dict)

    def task(
        self, name: str, function: TaskFunction, *, actor: SystemJob, retries: int = 0, queue: str = "default"
    ) -> None:
        self.tasks[name] = TaskSpec(name, function, actor, retries=retries, queue=queue)

    def periodic(self, name: str, function: TaskFunction, *, actor: SystemJob, cron: str) -> None:
        self.tasks[name] = TaskSpec(name, function, actor, cron=cron)

    def spec(self, name: str) -> TaskSpec:
        return self.tasks[name]

    @property
    def periodic_specs(self) -> list[TaskSpec]:
        return [spec for spec in self.tasks.values() if spec.cron is not None]


BILLING = "billing"  # the queue of month-close jobs
WEBHOOKS = "webhooks"  # the queue of partner webhook deliveries

TASKS = TaskRegistry()
TASKS.task(runs.DISPATCH_RUN, runs.dispatch_run, actor=MONTH_CLOSE, retries=5, queue=BILLING)
TASKS.task(
    # A batch runs again while any of its partners has tries left (each failure counts on the partner).
    runs.CLOSE_PARTNERS,
    runs.close_run_partners,
    actor=MONTH_CLOSE,
    retries=2 * PARTNER_TRIES,
    queue=BILLING,
)
TASKS.task(
    runs.CLOSE_PARTNER, runs.close_run_partner, actor=MONTH_CLOSE, retries=PARTNER_TRIES, queue=BILLING
)
TASKS.task(dunning.REVOKE_FOR_NONPAYMENT, dunning.revoke_for_nonpayment_job, actor=DUNNING, retries=5)
TASKS.periodic(dunning.DAILY_DUNNING, dunning.daily_dunning, actor=DUNNING, cron="0 6 * * *")
TASKS.periodic(runs.RESUME_STALLED, runs.resume_stalled_runs, actor=MONTH_CLOSE, cron="*/5 * * * *")
# Partner webhooks: on a queue of their own, so a slow endpoint never holds up a month close.
TASKS.task(webhooks.DELIVER_ENDPOINT, webhooks.deliver_endpoint_job, actor=PARTNER_WEBHOOKS, queue=WEBHOOKS)
TASKS.task(webhooks.DELIVER_DUE, webhooks.deliver_due, actor=PARTNER_WEBHOOKS, queue=WEBHOOKS)
# A safety net where no `licensing serve` queues the look (its timer does, every few seconds).
TASKS.periodic(
    webhooks.DELIVER_DUE + "_every_minute", webhooks.deliver_due, actor=PARTNER_WEBHOOKS, cron="* * * * *"
)


@dataclass
class JobServices:
    """What every task runs with, in a worker or in the server."""

    database: Database
    gateway: PaymentGateway
    clock: Clock
    policy: CollectionPolicy
    observer: Observer = NO_OBSERVER
    webhooks: WebhookDelivery | None = None  # None: partner webhooks are not delivered here

    def job(self, spec: TaskSpec, queue: JobQueue, job_id: str) -> Job:
        return Job(
            self.database,
            self.gateway,
            self.clock,
            self.policy,
            queue,
            spec.actor,
            job_id,
            self.observer,
            self.webhooks,
        )


class JobEngine(JobQueue, Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...


Queued = tuple[TaskSpec, dict[str, JsonValue], int, str | None]  # task, arguments, attempt, lock
# Webhook jobs a PostgreSQL worker runs at once (besides its other queues' jobs).
WEBHOOK_CONCURRENCY = 8
# Jobs of a queue run at once in-process: SQLite has one writer, but webhook attempts mostly wait on
# the partner's server (up to its timeout), so several endpoints are sent to at once.
IN_PROCESS_RUNNERS = {WEBHOOKS: WEBHOOK_CONCURRENCY}
CLOSE_GRACE_SECONDS = 5.0


class InProcessJobs:
    """SQLite: each queue's tasks run in this process's event loop, one at a time (webhooks: several),
    so a slow webhook endpoint never holds up a month close; retried like procrastinate does.

    What is queued lives in memory: on start, unfinished billing runs are queued again (their steps
    are idempotent), so a server that stopped mid-run finishes the run when it comes back; webhook
    deliveries are found again by the periodic look for due work."""

    def __init__(
        self, services: JobServices, registry: TaskRegistry = TASKS, *, periodic: bool = True
    ) -> None:
        self.services = services
        self.registry = registry
        self.periodic = periodic
        self._queues: dict[str, asyncio.Queue[Queued]] = {}
        self._runners: dict[str, list[asyncio.Task[None]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._numbers = iter(range(1, 1 << 62))
        self._waiting_locks: set[str] = set()  # locks of jobs queued and not started yet
        self._busy: set[asyncio.Task[None] | None] = set()  # runners in the middle of a job
        self._closing = False

    async def defer(self, task: str, **arguments: JsonValue) -> None:
        self._put(self.registry.spec(task), arguments, 0)

    async def defer_many(self, task: str, arguments: Sequence[dict[str, JsonValue]]) -> None:
        spec = self.registry.spec(task)
        for one in arguments:
            self._put(spec, one, 0)

    async def defer_once(
        self, task: str, *, lock: str, delay_seconds: float = 0, **arguments: JsonValue
    ) -> None:
        if lock in self._waiting_locks:
            return
        self._waiting_locks.add(lock)
        spec = self.registry.spec(task)
        if delay_seconds > 0:
            self._spawn(self._put_later(delay_seconds, spec, arguments, 0, lock))
        else:
            self._put(spec, arguments, 0, lock)

    async def start(self) -> None:
        resume = self.services.job(self.registry.spec(runs.DISPATCH_RUN), self, "startup")
        await runs.resume_unfinished_runs(resume)
        if self.periodic:
            for spec in self.registry.periodic_specs:
                self._spawn(self._every(spec))

    async def drain(self) -> None:
        """Wait until everything queued (and what it queued, on any queue) has run."""
        while any(queue._unfinished_tasks for queue in self._queues.values()):  # type: ignore[attr-defined]
            for queue in list(self._queues.values()):
                await queue.join()

    async def close(self) -> None:
        """Stop: timers and waiting jobs at once; a job already running gets CLOSE_GRACE_SECONDS to end
        (cancelled mid-transaction, it could leave SQLite's write lock held until collected)."""
        self._closing = True
        runners = [runner for runners in self._runners.values() for runner in runners]
        busy = [runner for runner in runners if runner in self._busy]
        for task in [*self._tasks, *(runner for runner in runners if runner not in busy)]:
            task.cancel()
        if busy:
            await asyncio.wait(busy, timeout=CLOSE_GRACE_SECONDS)
        for task in [*self._tasks, *runners]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        self._runners.clear()
        self._waiting_locks.clear()
        self._closing = False

    def _put(
        self, spec: TaskSpec, arguments: dict[str, JsonValue], attempt: int, lock: str | None = None
    ) -> None:
        queue = self._queues.setdefault(spec.queue, asyncio.Queue())
        runners = [runner for runner in self._runners.get(spec.queue, []) if not runner.done()]
        loop = asyncio.get_running_loop()
        runners += [
            loop.create_task(self._work(queue))
            for _ in range(IN_PROCESS_RUNNERS.get(spec.queue, 1) - len(runners))
        ]
        self._runners[spec.queue] = runners
        queue.put_nowait((spec, arguments, attempt, lock))

    async def _put_later(
        self, seconds: float, spec: TaskSpec, arguments: dict[str, JsonValue], attempt: int, lock: str | None
    ) -> None:
        await asyncio.sleep(seconds)
        self._put(spec, arguments, attempt, lock)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _work(self, queue: asyncio.Queue[Queued]) -> None:
        runner = asyncio.current_task()
        while not self._closing:
            spec, arguments, attempt, lock = await queue.get()
            self._waiting_locks.discard(lock or "")  # started: the next one may queue
            self._busy.add(runner)
            try:
                await spec.function(
                    self.services.job(spec, self, f"local-{next(self._numbers)}"), **arguments
                )
            except Exception:
                log.exception("task %s failed (attempt %d)", spec.name, attempt + 1)
                if attempt < spec.retries:
                    delay = spec.retry_seconds * 2**attempt
                    self._spawn(self._put_later(delay, spec, arguments, attempt + 1, None))
            finally:
                self._busy.discard(runner)
                queue.task_done()

    async def _every(self, spec: TaskSpec) -> None:
        schedule = croniter(spec.cron, datetime.now(UTC))
        while True:
            next_at: datetime = schedule.get_next(datetime)
            await asyncio.sleep(max(0.0, (next_at - datetime.now(UTC)).total_seconds()))
            self._put(spec, {}, spec.retries)


def psycopg_conninfo(database_url: str) -> str:
    """The SQLAlchemy URL (postgresql+asyncpg://…) as libpq connection info for procrastinate."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class ProcrastinateJobs:
    """PostgreSQL: tasks are procrastinate jobs; any number of `licensing worker` processes run them."""

    def __init__(
        self,
        database_url: str,
        services: JobServices,
        registry: TaskRegistry = TASKS,
        *,
        periodic: bool = True,
        embedded_worker: bool = False,
        queue_prefix: str = "",
    ) -> None:
        import procrastinate

        self.services = services
        self.registry = registry
        self.periodic = periodic
        self.embedded_worker = embedded_worker
        self.queue_prefix = queue_prefix
        self.app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(conninfo=psycopg_conninfo(database_url))
        )
        self._opened = False
        self._worker: asyncio.Task[None] | None = None
        for spec in registry.tasks.values():
            self._register(procrastinate, spec)

    def _register(self, procrastinate: Any, spec: TaskSpec) -> None:
        retry = (
            procrastinate.RetryStrategy(max_attempts=spec.retries, exponential_wait=spec.retry_seconds)
            if spec.retries
            else False
        )

        async def run(context: Any, **arguments: JsonValue) -> None:
            arguments.pop("timestamp", None)  # what procrastinate gives a periodic task
            job = self.services.job(spec, self, str(context.job.id))
            await spec.function(job, **arguments)

        task = self.app.task(name=spec.name, queue=self.queue(spec.queue), retry=retry, pass_context=True)(
            run
        )
        if spec.cron is not None and self.periodic:
            self.app.periodic(cron=spec.cron, periodic_id=spec.name)(task)  # type: ignore[arg-type]

    def queue(self, name: str) -> str:
        return self.queue_prefix + name

    async def _open(self) -> None:
        if not self._opened:
            await self.app.open_async()
            self._opened = True

    async def defer(self, task: str, **arguments: JsonValue) -> None:
        await self._open()
        await self.app.configure_task(task, queue=self.queue(self.registry.spec(task).queue)).defer_async(
            **arguments
        )
        if self.embedded_worker:
            await self.start()

    async def defer_once(
        self, task: str, *, lock: str, delay_seconds: float = 0, **arguments: JsonValue
    ) -> None:
        """procrastinate's queueing lock: a second job with the lock while one waits is refused. Its
        locks are one namespace for the whole database, so they carry the queue prefix too."""
        from procrastinate.exceptions import AlreadyEnqueued

        await self._open()
        deferrer = self.app.configure_task(
            task,
            queue=self.queue(self.registry.spec(task).queue),
            queueing_lock=self.queue(lock),
            schedule_in={"seconds": int(delay_seconds + 0.999)} if delay_seconds > 0 else None,
        )
        with contextlib.suppress(AlreadyEnqueued):
            await deferrer.defer_async(**arguments)
        if self.embedded_worker:
            await self.start()

    async def defer_many(self, task: str, arguments: Sequence[dict[str, JsonValue]]) -> None:
        await self._open()
        deferrer = self.app.configure_task(task, queue=self.queue(self.registry.spec(task).queue))
        for start in range(0, len(arguments), 1000):
            batch: list[Any] = list(arguments[start : start + 1000])
            await deferrer.batch_defer_async(*batch)
        if self.embedded_worker:
            await self.start()

    async def retry_stalled_jobs(self, seconds_since_heartbeat: float = 30) -> int:
        """Put back the jobs of workers that died (no heartbeat): they run again elsewhere."""
        stalled = list(
            await self.app.job_manager.get_stalled_jobs(seconds_since_heartbeat=seconds_since_heartbeat)
        )
        for job in stalled:
            log.warning("job %s (%s) of a dead worker is run again", job.id, job.task_name)
            await self.app.job_manager.retry_job(job)
        return len(stalled)

    async def run_worker(
        self,
        *,
        name: str | None = None,
        concurrency: int = 1,
        queues: list[str] | None = None,
        polling_seconds: float = 5.0,
    ) -> None:
        """Work until cancelled; every minute, jobs of dead workers are put back. Without `queues`,
        the webhooks queue gets a worker of its own (WEBHOOK_CONCURRENCY jobs at once): attempts wait
        on partners' servers, and must never hold up a month close."""
        await self._open()
        name = name or f"worker-{int(time.time())}"
        if queues is None:
            others = [queue for queue in self.queue_names() if queue != WEBHOOKS]
            workers = [
                self._work(f"{name}-webhooks", WEBHOOK_CONCURRENCY, [WEBHOOKS], polling_seconds),
                self._work(name, concurrency, others, polling_seconds),
            ]
        else:
            workers = [self._work(name, concurrency, queues, polling_seconds)]
        sweeper = asyncio.create_task(self._sweep_stalled())
        try:
            await asyncio.gather(*workers)
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

    async def _work(self, name: str, concurrency: int, queues: list[str], polling_seconds: float) -> None:
        await self.app.run_worker_async(
            name=name,
            concurrency=concurrency,
            queues=[self.queue(queue) for queue in queues],
            install_signal_handlers=False,
            wait=True,
            # LISTEN/NOTIFY wakes the worker at once; polling is the fallback.
            fetch_job_polling_interval=polling_seconds,
        )

    def queue_names(self) -> list[str]:
        return sorted({spec.queue for spec in self.registry.tasks.values()})

    async def _sweep_stalled(self) -> None:
        while True:
            await asyncio.sleep(60)
            try:
                await self.retry_stalled_jobs()
            except Exception:
                log.exception("could not look for stalled jobs")

    async def start(self) -> None:
        """Run a worker inside this process too (LICENSING_EMBEDDED_WORKER; the tests do)."""
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(
                self.run_worker(name="embedded", polling_seconds=0.5)
            )

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker
            self._worker = None
        if self._opened:
            await self.app.close_async()
            self._opened = False


def job_engine(
    database_url: str,
    services: JobServices,
    *,
    periodic: bool = True,
    embedded_worker: bool = False,
    queue_prefix: str = "",
) -> InProcessJobs | ProcrastinateJobs:
    """procrastinate on PostgreSQL, the in-process runner on SQLite."""
    if make_url(database_url).get_backend_name() == "sqlite":
        return InProcessJobs(services, periodic=periodic)
    return ProcrastinateJobs(
        database_url, services, periodic=periodic, embedded_worker=embedded_worker, queue_prefix=queue_prefix
    )
