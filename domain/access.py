"""Who may do what: the roles a token carries and the one policy table (permission → roles) that every
use case consults. The API's field descriptions are generated from the same table (see the README,
"Access"), so the documentation cannot drift from what is enforced."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum, StrEnum
from typing import Protocol

from domain.events import DomainEvent


class Role(Enum):
    """What a token may do. Partner roles act on their own partner; staff roles operate the system."""

    ADMIN = "admin"
    LICENSES = "licenses"
    BILLING = "billing"
    READ_ONLY = "read_only"
    STAFF_ADMIN = "staff_admin"
    STAFF_SUPPORT = "staff_support"

    @property
    def is_staff(self) -> bool:
        return self in STAFF_ROLES


class Permission(Enum):
    """An action, named as `area:verb`; the policy table says which roles hold it."""

    # Answered without a token (support contacts, license checks by key).
    PUBLIC = "public"
    PARTNER_READ = "partner:read"
    RECORDS_READ = "records:read"
    PARTNERS_LIST = "partners:list"
    PARTNERS_MANAGE = "partners:manage"
    LICENSES_WRITE = "licenses:write"
    PAYMENTS_WRITE = "payments:write"
    TOKENS_READ = "tokens:read"
    TOKENS_MANAGE = "tokens:manage"
    CATALOG_MANAGE = "catalog:manage"
    MONTH_CLOSE = "billing:close"
    # Billing runs: their progress, counts and failures (staff only).
    BILLING_RUNS_READ = "billing_runs:read"
    SANDBOX_CLOCK = "sandbox:clock"
    # Voiding, writing off and refunding invoices: money movement, staff_admin only.
    INVOICE_ADJUST = "invoices:adjust"
    # Refetching an object by its global id (`node`, `nodes`); the object's own read rule applies too.
    NODES_READ = "nodes:read"
    # Partner webhooks: every partner role reads endpoints and deliveries; only admins change them.
    WEBHOOKS_READ = "webhooks:read"
    WEBHOOKS_MANAGE = "webhooks:manage"
    # The audit log (who did what): a partner admin its own partner's, staff any partner's.
    AUDIT_READ = "audit:read"


STAFF_ROLES = frozenset({Role.STAFF_ADMIN, Role.STAFF_SUPPORT})
PARTNER_ROLES = frozenset({Role.ADMIN, Role.LICENSES, Role.BILLING, Role.READ_ONLY})
EVERY_ROLE = PARTNER_ROLES | STAFF_ROLES

POLICY: dict[Permission, frozenset[Role]] = {
    Permission.PUBLIC: EVERY_ROLE,
    # A partner's own account, licenses, billing and live feeds: every partner role reads them.
    Permission.PARTNER_READ: PARTNER_ROLES,
    # Records staff also read (any partner's): invoices, counts, the catalog, support contacts.
    Permission.RECORDS_READ: EVERY_ROLE,
    Permission.PARTNERS_LIST: STAFF_ROLES,
    Permission.PARTNERS_MANAGE: frozenset({Role.STAFF_ADMIN}),
    Permission.LICENSES_WRITE: frozenset({Role.ADMIN, Role.LICENSES}),
    Permission.PAYMENTS_WRITE: frozenset({Role.ADMIN, Role.BILLING}),
    Permission.TOKENS_READ: frozenset({Role.ADMIN, Role.STAFF_ADMIN, Role.STAFF_SUPPORT}),
    Permission.TOKENS_MANAGE: frozenset({Role.ADMIN, Role.STAFF_ADMIN}),
    Permission.CATALOG_MANAGE: frozenset({Role.STAFF_ADMIN}),
    Permission.MONTH_CLOSE: frozenset({Role.STAFF_ADMIN}),
    Permission.BILLING_RUNS_READ: STAFF_ROLES,
    Permission.SANDBOX_CLOCK: frozenset({Role.STAFF_ADMIN}),
    Permission.INVOICE_ADJUST: frozenset({Role.STAFF_ADMIN}),
    Permission.NODES_READ: EVERY_ROLE,
    Permission.WEBHOOKS_READ: PARTNER_ROLES,
    Permission.WEBHOOKS_MANAGE: frozenset({Role.ADMIN}),
    Permission.AUDIT_READ: frozenset({Role.ADMIN, Role.STAFF_ADMIN, Role.STAFF_SUPPORT}),
}

# Which roles a token of each role may mint or manage: never above its own.
GRANTABLE: dict[Role, frozenset[Role]] = {
    Role.ADMIN: PARTNER_ROLES,
    Role.STAFF_ADMIN: EVERY_ROLE,
}


def allows(role: Role, permission: Permission) -> bool:
    return role in POLICY[permission]


def roles_sentence(permission: Permission) -> str:
    """The sentence every API field's description ends with, generated from the policy table."""
    if permission is Permission.PUBLIC:
        return "No token needed."
    roles = ", ".join(role.value for role in Role if role in POLICY[permission])
    return f"Needs permission `{permission.value}` (roles: {roles})."


def may_grant(granter: Role, role: Role) -> bool:
    """Whether a token of role `granter` may create, rotate or revoke a token of role `role`."""
    return role in GRANTABLE.get(granter, frozenset())


@dataclass(frozen=True)
class ApiToken:
    """A stored token as its owners see it: never the secret (only its hash is kept)."""

    id: str
    partner_id: str | None
    role: Role
    label: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None

    def is_active(self, at: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or at < self.expires_at)


class TokenChange(StrEnum):
    CREATED = "created"
    ROTATED = "rotated"  # replaced by a new token; the old secret works until its grace period ends
    REVOKED = "revoked"


class TokenFacts(Protocol):
    """What a token event tells of a token: a stored ApiToken, or one just minted."""

    @property
    def id(self) -> str: ...
    @property
    def partner_id(self) -> str | None: ...
    @property
    def role(self) -> Role: ...
    @property
    def label(self) -> str: ...


def token_event(token: TokenFacts, change: TokenChange, at: datetime, **details: str) -> DomainEvent | None:
    """The event of a change to a partner's token, on that partner's feed (never the secret).

    Staff tokens belong to no partner, so they have no feed: their changes show in the token list only.
    """
    if token.partner_id is None:
        return None
    payload = {"role": token.role.value, "label": token.label, **details}
    return DomainEvent(token.partner_id, "api_token", token.id, change.value, at, payload=payload)
