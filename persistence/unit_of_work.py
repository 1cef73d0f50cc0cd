"""One unit of work per use case: one connection, one transaction, the repositories bound to it, and
the events its transitions produced, stored with the change at commit (in the order collected).

Every event records its actor (domain.actors): the unit of work that writes is opened with one, the
request's token (`RequestContext.unit_of_work`) or a system job (`actor=Actor.system(DUNNING)`).
Collecting an event in a unit of work without an actor is a programming error, refused at once."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy.ext.asyncio import AsyncConnection

from domain.actors import Actor
from domain.events import DomainEvent
from persistence.audit_log import AuditLogReader
from persistence.billing import BillingReader
from persistence.billing_runs import BillingRunRepository
from persistence.database import Database
from persistence.dunning import DunningRepository
from persistence.events import EventLog, NewEvent
from persistence.idempotency import IdempotencyStore
from persistence.invoice_adjustments import RefundRepository
from persistence.invoices import InvoiceRepository
from persistence.licenses import LicenseRepository, TransferRepository
from persistence.partners import PartnerRepository
from persistence.payment_attempts import InvoicePaymentRepository, PaymentAttemptRepository
from persistence.payment_methods import CustomerRepository, PaymentMethodRepository
from persistence.products import ProductRepository
from persistence.standing import StandingRepository
from persistence.tokens import TokenRepository, token_signal
from persistence.webhook_events import WebhookEventLog
from persistence.webhooks import WebhookRepository


class UnitOfWork:
    """Commits when the block ends normally, rolls back on any exception: nothing is half-written."""

    partners: PartnerRepository
    tokens: TokenRepository
    products: ProductRepository
    events: EventLog
    idempotency: IdempotencyStore
    billing: BillingReader
    invoices: InvoiceRepository
    standing: StandingRepository
    licenses: LicenseRepository
    transfers: TransferRepository
    customers: CustomerRepository
    payment_methods: PaymentMethodRepository
    payment_attempts: PaymentAttemptRepository
    invoice_payments: InvoicePaymentRepository
    refunds: RefundRepository
    webhook_events: WebhookEventLog
    dunning: DunningRepository
    webhooks: WebhookRepository
    audit_log: AuditLogReader
    billing_runs: BillingRunRepository

    def __init__(
        self,
        database: Database,
        *,
        read_only: bool = False,
        actor: Actor | None = None,
        request_id: str | None = None,
    ) -> None:
        self._database = database
        self._read_only = read_only
        # Who the events collected here are recorded as made by, and in which request (if any).
        self.actor = actor
        self.request_id = request_id
        self._connection: AsyncConnection | None = None
        self._collected: list[NewEvent] = []

    @property
    def connection(self) -> AsyncConnection:
        if self._connection is None:
            raise RuntimeError("the unit of work is not open")
        return self._connection

    def collect(self, event: DomainEvent | None, *, request_id: str | None = None) -> None:
        """Keep the event a transition produced (None: it changed nothing worth telling) for the commit,
        recorded as made by this unit of work's actor."""
        if event is None:
            return
        if self._read_only:
            raise RuntimeError("a read-only unit of work changes nothing, so it records no event")
        if self.actor is None:
            raise RuntimeError(
                f"an event ({event.stream} {event.action}) needs its actor: open the unit of work with "
                "actor=... (the request's token, or Actor.system(<job>) for a system job)"
            )
        self._collected.append(
            NewEvent(
                partner_id=event.partner_id,
                stream=event.stream,
                subject=event.subject,
                action=event.action,
                at=event.at,
                from_state=event.from_state,
                to_state=event.to_state,
                actor=self.actor,
                request_id=request_id or self.request_id,
                payload=dict(event.payload),
            )
        )

    async def __aenter__(self) -> UnitOfWork:
        engine = self._database.read_engine if self._read_only else self._database.engine
        self._connection = await engine.connect()
        await self._connection.begin()
        self._bind(self._connection)
        return self

    def _bind(self, connection: AsyncConnection) -> None:
        self.partners = PartnerRepository(connection)
        self.tokens = TokenRepository(connection)
        self.products = ProductRepository(connection)
        self.events = EventLog(connection)
        self.idempotency = IdempotencyStore(connection)
        self.billing = BillingReader(connection)
        self.invoices = InvoiceRepository(connection)
        self.standing = StandingRepository(connection)
        self.licenses = LicenseRepository(connection)
        self.transfers = TransferRepository(connection)
        self.customers = CustomerRepository(connection)
        self.payment_methods = PaymentMethodRepository(connection)
        self.payment_attempts = PaymentAttemptRepository(connection)
        self.invoice_payments = InvoicePaymentRepository(connection)
        self.refunds = RefundRepository(connection)
        self.webhook_events = WebhookEventLog(connection)
        self.dunning = DunningRepository(connection)
        self.webhooks = WebhookRepository(connection)
        self.audit_log = AuditLogReader(connection)
        self.billing_runs = BillingRunRepository(connection)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        connection = self.connection
        committed = exc_type is None and not self._read_only
        try:
            if committed:
                for event in self._collected:
                    await self.events.append(event)
                await connection.commit()
            else:
                await connection.rollback()
        finally:
            await connection.close()
            self._connection = None
            self._collected = []
        if committed:
            for partner_id in self.events.touched_partners:
                self._database.signal.wake(partner_id)
            for token_id in self.tokens.changed:
                self._database.signal.wake(token_signal(token_id))
