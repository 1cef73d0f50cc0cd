"""What every use case receives: the caller, the database, the clock, the payment gateway and the policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from domain.access import Permission
from domain.clock import Clock, SettableClock
from domain.errors import DomainError, ErrorCode
from domain.payments import CollectionPolicy
from domain.principals import Principal, require_principal
from domain.support import SupportContact
from payments.gateway import GatewayUnavailable, PaymentGateway
from persistence.database import Database
from persistence.unit_of_work import UnitOfWork
from resolvers.observation import NO_OBSERVER, Observer


class CheckLimiter(Protocol):
    """Rate limits on license checks (resolvers.license_checks.CheckLimits)."""

    async def retry_after(self, address: str) -> int | None: ...


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
    # Told about charges, event deliveries and month-close progress (the app's metrics).
    observer: Observer = NO_OBSERVER

    @property
    def actor_token_id(self) -> str | None:
        """The API token behind this request, recorded on the events it causes."""
        return None if self.principal is None else self.principal.token_id

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

    def unit_of_work(self) -> UnitOfWork:
        return UnitOfWork(self.database)

    def reader(self) -> UnitOfWork:
        return UnitOfWork(self.database, read_only=True)

    def sandbox_clock(self) -> SettableClock:
        if not self.sandbox or not isinstance(self.clock, SettableClock):
            raise DomainError(
                ErrorCode.SANDBOX_DISABLED,
                "The clock can only be moved in sandbox mode (LICENSING_SANDBOX=1).",
            )
        return self.clock
