"""What every use case receives: the caller, the database, the clock, the payment gateway and the policy."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass, field
from typing import Protocol

from domain.access import Permission
from domain.actors import Actor, SystemJob
from domain.clock import Clock, SettableClock
from domain.errors import DomainError, ErrorCode
from domain.payments import CollectionPolicy
from domain.principals import Principal, require_principal
from domain.support import SupportContact
from payments.gateway import GatewayUnavailable, PaymentGateway
from persistence.database import Database
from persistence.unit_of_work import UnitOfWork
from resolvers.jobs import JobQueue
from resolvers.observation import NO_OBSERVER, Observer
from resolvers.webhook_sending import AddressLookup


class CheckLimiter(Protocol):
    """Rate limits on license checks (resolvers.license_checks.CheckLimits)."""

    async def retry_after(self, address: str) -> int | None: ...


class SharedReads:
    """One read-only unit of work lent, in turn, to every reader of one query operation.

    Opened by the first reader and ended with the request (`end`): the fields of a query read one
    snapshot through one connection and one transaction instead of one each. Readers take turns (a
    lock): a reader block awaits only its unit of work, never another reader. The same task reading
    again inside its own block gets a unit of work of its own. An unexpected error inside a block ends
    the shared unit of work (on PostgreSQL a failed statement spoils the transaction); the next reader
    opens a new one.
    """

    def __init__(self, database: Database) -> None:
        self._database = database
        self._uow: UnitOfWork | None = None
        self._lock = asyncio.Lock()
        self._holder: asyncio.Task[object] | None = None

    @contextlib.asynccontextmanager
    async def use(self) -> AsyncIterator[UnitOfWork]:
        task = asyncio.current_task()
        if task is not None and task is self._holder:
            async with UnitOfWork(self._database, read_only=True) as own:
                yield own
            return
        async with self._lock:
            self._holder = task
            try:
                if self._uow is None:
                    uow = UnitOfWork(self._database, read_only=True)
                    await uow.__aenter__()
                    self._uow = uow
                yield self._uow
            except DomainError:
                raise
            except BaseException:
                await self.end()
                raise
            finally:
                self._holder = None

    async def end(self) -> None:
        """Roll the shared transaction back and give its connection back (idempotent)."""
        uow, self._uow = self._uow, None
        if uow is not None:
            await uow.__aexit__(None, None, None)


@dataclass
class RequestContext:
    database: Database
    clock: Clock
    principal: Principal | None
    request_id: str
    support: SupportContact
    sandbox: bool = False
    # The payment provider (Stripe, or localstripe in tests and the demo) and the collection policy.
    gateway: PaymentGateway | None = None
    collection: CollectionPolicy = field(default_factory=CollectionPolicy)
    # Filled by the HTTP layer when a token was sent but is unknown or revoked.
    credential_problem: str | None = None
    # A bearer token sent with the request and not looked up yet (see resolvers.tokens.identify_caller):
    # an operation that never asks who the caller is costs no token lookup.
    unread_token: str | None = None
    loaders: dict[str, object] = field(default_factory=dict)
    # graphql-transport-ws: the connection_init payload (set by Strawberry before on_ws_connect).
    connection_params: dict[str, object] | None = None
    # Subscriptions run only over a websocket; over HTTP they are refused before they start.
    over_websocket: bool = False
    # Where the request came from (the peer address) and the limits on license checks per address.
    client_address: str | None = None
    license_checks: CheckLimiter | None = None
    # How webhook endpoint hosts resolve (DNS, or the operator's fixed answers) when they are registered.
    webhook_lookup: AddressLookup | None = None
    # Set when a system job drives use cases itself (the demo seed): its events name the job, not a token.
    system_job: SystemJob | None = None

    @property
    def actor(self) -> Actor | None:
        """Who the events this request causes are recorded as made by: the job, else the API token."""
        if self.system_job is not None:
            return Actor.system(self.system_job)
        principal = self.principal
        if principal is None:
            return None
        return Actor.token(principal.token_id, principal.label, principal.partner_id)

    # Where background work is deferred (app/jobs.py: procrastinate on PostgreSQL, in-process on SQLite).
    jobs: JobQueue | None = None
    # Set for a query over HTTP (app.http; schema.pipeline drops it for other operations): its readers
    # share one read transaction, ended when the request is answered.
    shared_reads: SharedReads | None = None
    # Told about charges, event deliveries and month-close progress (the app's metrics).
    observer: Observer = NO_OBSERVER

    @property
    def actor_token_id(self) -> str | None:
        """The API token behind this request."""
        return None if self.principal is None else self.principal.token_id

    def fanout_scope(self) -> Hashable | None:
        """Everything about the caller that what a subscription delivers may depend on: subscribers with
        the same scope (and document, variables and event) share one execution of it (schema.fanout).
        A partner's subscribers never share with another partner's; roles are kept apart too, since a
        field may answer by permission. None (no caller yet): nothing is shared."""
        principal = self.principal
        if principal is None:
            return None
        return ("principal", principal.partner_id, principal.is_staff, principal.role.value)

    def caller(self) -> Principal:
        if self.principal is None and self.credential_problem:
            raise DomainError(ErrorCode.UNAUTHENTICATED, self.credential_problem)
        return require_principal(self.principal)

    def require(self, permission: Permission) -> Principal:
        """The caller, if its role holds `permission` (the policy table in domain.access decides)."""
        return self.caller().require(permission)

    def partner_id(self, permission: Permission = Permission.PARTNER_READ) -> str:
        """The caller's own partner, if its role holds `permission`."""
        return self.require(permission).require_partner()

    def readable_partner(self, partner_id: str | None = None) -> str:
        """Whose data to read: the caller's own partner, or (staff only) the partner named. Another
        partner's id answers a partner token exactly like an unknown one (NOT_FOUND)."""
        principal = self.require(Permission.RECORDS_READ)
        if partner_id is None:
            return principal.require_partner()
        if not principal.is_staff and principal.partner_id != partner_id:
            raise DomainError(ErrorCode.NOT_FOUND, f"No partner '{partner_id}'.", field="id")
        return partner_id

    def records_owner(self) -> str | None:
        """The partner whose invoices and licenses the caller may read; None for staff (every partner)."""
        principal = self.require(Permission.RECORDS_READ)
        return None if principal.is_staff else principal.require_partner()

    def require_staff(self, permission: Permission) -> Principal:
        """A staff caller whose role holds `permission`."""
        principal = self.require(permission)
        principal.require_staff()
        return principal

    def payments(self) -> PaymentGateway:
        if self.gateway is None:
            raise GatewayUnavailable("No payment provider is configured.")
        return self.gateway

    def job_queue(self) -> JobQueue:
        if self.jobs is None:
            raise RuntimeError("no job queue is configured")
        return self.jobs

    def unit_of_work(self) -> UnitOfWork:
        """A writing unit of work whose events name this request's actor and request id."""
        return UnitOfWork(self.database, actor=self.actor, request_id=self.request_id)

    def reader(self) -> contextlib.AbstractAsyncContextManager[UnitOfWork]:
        """A read-only unit of work: the request's shared one for a query (see SharedReads)."""
        if self.shared_reads is not None:
            return self.shared_reads.use()
        return UnitOfWork(self.database, read_only=True)

    async def end_reads(self) -> None:
        if self.shared_reads is not None:
            await self.shared_reads.end()

    def sandbox_clock(self) -> SettableClock:
        if not self.sandbox or not isinstance(self.clock, SettableClock):
            raise DomainError(
                ErrorCode.SANDBOX_DISABLED,
                "The clock can only be moved in sandbox mode (LICENSING_SANDBOX=1).",
            )
        return self.clock
