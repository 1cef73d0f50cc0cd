"""Licenses: the state machine of one holding of a license key (the README: State machines).

A *holding* is one partner's possession of a key, from `held_from` (issue, or acceptance of a
transfer) to `held_until` (revoke, or the transfer out). A transferred key is held again by the
receiver under the same key, in a new holding that starts on acceptance.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from statemachine import State, StateMachine
from statemachine.exceptions import TransitionNotAllowed

from domain.errors import DomainError, ErrorCode
from domain.events import DomainEvent

MIN_QUANTITY = 1
MAX_QUANTITY = 100
MAX_ITEMS = 10
TRANSFER_LIFETIME = timedelta(days=7)


class LicenseState(StrEnum):
    ISSUED = "issued"
    ASSIGNED = "assigned"
    REVOKED = "revoked"
    TRANSFERRED = "transferred"


LIVE_STATES = (LicenseState.ISSUED, LicenseState.ASSIGNED)


class LicenseEvent(StrEnum):
    ISSUE = "issue"
    RECEIVE = "receive"
    ASSIGN = "assign"
    MOVE = "move"
    UNASSIGN = "unassign"
    REVOKE = "revoke"
    TRANSFER = "transfer"


# How a refused event reads in "License k is revoked; it cannot be <participle>."
_PARTICIPLE = {
    LicenseEvent.ISSUE: "issued",
    LicenseEvent.RECEIVE: "received",
    LicenseEvent.ASSIGN: "assigned",
    LicenseEvent.MOVE: "moved",
    LicenseEvent.UNASSIGN: "unassigned",
    LicenseEvent.REVOKE: "revoked",
    LicenseEvent.TRANSFER: "transferred",
}


@dataclass
class License:
    """One holding of a key. The state machine is the only writer of `state` and the instants."""

    id: str
    key: str
    partner_id: str
    product_slug: str
    state: str | None = None  # None until the machine issues (or receives) it
    site: str | None = None
    held_from: datetime | None = None
    held_until: datetime | None = None
    issued_at: datetime | None = None
    assigned_at: datetime | None = None
    revoked_at: datetime | None = None
    transferred_at: datetime | None = None
    version: int = 0  # bumped by the repository on every save (optimistic concurrency)

    @property
    def is_live(self) -> bool:
        return self.state in LIVE_STATES


class LicenseMachine(StateMachine):
    """`new` is the holding before it exists: `issue` (or `receive`, for a transfer) creates it."""

    new = State(initial=True)
    issued = State()
    assigned = State()
    revoked = State(final=True)
    transferred = State(final=True)

    issue = new.to(issued)
    receive = new.to(assigned, cond="has_site") | new.to(issued, unless="has_site")
    assign = issued.to(assigned)
    move = assigned.to.itself()
    unassign = assigned.to(issued)
    revoke = issued.to(revoked) | assigned.to(revoked)
    transfer = issued.to(transferred) | assigned.to(transferred)

    def __init__(self, holding: License) -> None:
        super().__init__(holding)
        self.holding = holding

    def has_site(self, site: str | None = None) -> bool:
        return site is not None

    def on_issue(self, at: datetime) -> None:
        self.holding.held_from = self.holding.issued_at = at

    def on_receive(self, at: datetime, site: str | None = None) -> None:
        # For the receiver the holding starts on acceptance: that is its issue instant.
        self.holding.held_from = self.holding.issued_at = at
        self.holding.site = site
        self.holding.assigned_at = at if site is not None else None

    def on_assign(self, at: datetime, site: str) -> None:
        self.holding.site = site
        self.holding.assigned_at = at

    def on_move(self, at: datetime, site: str) -> None:
        self.holding.site = site
        self.holding.assigned_at = at

    def on_unassign(self) -> None:
        self.holding.site = None
        self.holding.assigned_at = None

    def on_revoke(self, at: datetime) -> None:
        self.holding.held_until = self.holding.revoked_at = at

    def on_transfer(self, at: datetime) -> None:
        self.holding.held_until = self.holding.transferred_at = at


@dataclass(frozen=True)
class Transition:
    """What happened to a holding: the history row the use case records."""

    license: License
    action: LicenseEvent
    from_state: str | None
    to_state: str
    at: datetime
    site: str | None
    previous_site: str | None

    def event(self, payload: Mapping[str, Any] | None = None) -> DomainEvent:
        """The "license" event this transition records: the site, and the previous one when it moved."""
        holding = self.license
        details: dict[str, Any] = {
            "license_id": holding.id,
            "product_slug": holding.product_slug,
            "site": self.site,
        }
        if self.previous_site != self.site:
            details["previous_site"] = self.previous_site
        return DomainEvent(
            holding.partner_id,
            "license",
            holding.key,
            self.action.value,
            self.at,
            self.from_state,
            self.to_state,
            details | dict(payload or {}),
        )


def license_fact(holding: License, action: str, at: datetime, payload: Mapping[str, Any]) -> DomainEvent:
    """A "license" event that leaves the state as it is (a transfer offered, cancelled or expired)."""
    return DomainEvent(
        holding.partner_id,
        "license",
        holding.key,
        action,
        at,
        holding.state,
        holding.state,
        {"license_id": holding.id, "site": holding.site} | dict(payload),
    )


def drive(holding: License, event: LicenseEvent, *, at: datetime, site: str | None = None) -> Transition:
    """Send `event` to the holding's machine; refuse with INVALID_TRANSITION naming the current state."""
    from_state, previous_site = holding.state, holding.site
    if event is LicenseEvent.MOVE and site == holding.site:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"License {holding.key} is already assigned to {site}.", "site"
        )
    machine = LicenseMachine(holding)
    try:
        machine.send(event.value, at=at, site=site)
    except TransitionNotAllowed as error:
        raise invalid_transition(holding, event) from error
    return Transition(
        license=holding,
        action=event,
        from_state=from_state,
        to_state=str(holding.state),
        at=at,
        site=holding.site,
        previous_site=previous_site,
    )


def invalid_transition(holding: License, event: LicenseEvent) -> DomainError:
    return DomainError(
        ErrorCode.INVALID_TRANSITION,
        f"License {holding.key} is {holding.state}; it cannot be {_PARTICIPLE[event]}.",
    )


def issue_license(*, product_slug: str, partner_id: str, at: datetime) -> Transition:
    holding = License(
        id=new_license_id(),
        key=new_license_key(product_slug),
        partner_id=partner_id,
        product_slug=product_slug,
    )
    return drive(holding, LicenseEvent.ISSUE, at=at)


def receive_license(sent: License, *, partner_id: str, at: datetime) -> Transition:
    """The receiver's new holding of a transferred key: same key and product, and the site kept."""
    holding = License(
        id=new_license_id(), key=sent.key, partner_id=partner_id, product_slug=sent.product_slug
    )
    return drive(holding, LicenseEvent.RECEIVE, at=at, site=sent.site)


def assign_or_move(holding: License, *, site: str, at: datetime) -> Transition:
    """Assign an issued license; an assigned one is moved to the new site."""
    event = LicenseEvent.MOVE if holding.state == LicenseState.ASSIGNED else LicenseEvent.ASSIGN
    return drive(holding, event, at=at, site=site)


class LicenseOrderField(StrEnum):
    ISSUED_AT = "issued_at"
    ASSIGNED_AT = "assigned_at"
    REVOKED_AT = "revoked_at"


@dataclass(frozen=True)
class LicenseFilter:
    """Which of a partner's licenses to list; empty means no restriction."""

    states: tuple[LicenseState, ...] = ()
    product_slugs: tuple[str, ...] = ()
    search: str | None = None


@dataclass(frozen=True)
class LicenseOrder:
    field: LicenseOrderField = LicenseOrderField.ISSUED_AT
    descending: bool = True


MAX_SEARCH_LENGTH = 200


def clean_search(search: str | None) -> str | None:
    """Trimmed search text, or None when there is nothing to search for."""
    if search is None or not search.strip():
        return None
    if len(search) > MAX_SEARCH_LENGTH:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"Search at most {MAX_SEARCH_LENGTH} characters.", "filter.search"
        )
    return search.strip()


@dataclass(frozen=True)
class IssueItem:
    product_slug: str
    quantity: int


def validate_issue_items(items: list[IssueItem]) -> list[IssueItem]:
    """Each product once, 1 to 100 licenses each, at most MAX_ITEMS products per request."""
    if not items:
        raise DomainError(ErrorCode.INVALID_INPUT, "Give at least one product to issue.", "items")
    if len(items) > MAX_ITEMS:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"Issue at most {MAX_ITEMS} products per request.", "items"
        )
    seen: set[str] = set()
    for index, item in enumerate(items):
        if not MIN_QUANTITY <= item.quantity <= MAX_QUANTITY:
            raise DomainError(
                ErrorCode.INVALID_INPUT,
                f"Quantity must be between {MIN_QUANTITY} and {MAX_QUANTITY}; got {item.quantity}.",
                f"items[{index}].quantity",
            )
        if item.product_slug in seen:
            raise DomainError(
                ErrorCode.INVALID_INPUT,
                f"'{item.product_slug}' appears twice; give each product once with its quantity.",
                f"items[{index}].productSlug",
            )
        seen.add(item.product_slug)
    return items


def new_license_id() -> str:
    return "lic_" + secrets.token_hex(12)


def new_license_key(product_slug: str) -> str:
    """`<product-slug>_<32 hex digits>`: 128 random bits from `secrets`, so keys cannot be guessed."""
    return f"{product_slug}_{secrets.token_hex(16)}"


@dataclass
class Transfer:
    """A holder's offer to hand a license to whoever presents the one-time code before it expires."""

    id: str
    license_id: str
    from_partner_id: str
    code_hash: str
    created_at: datetime
    expires_at: datetime
    status: str = "pending"
    accepted_by_partner_id: str | None = None
    accepted_at: datetime | None = None


class TransferStatus(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class StartedTransfer:
    transfer: Transfer
    code: str  # shown once; only its hash is stored


def start_transfer(holding: License, *, at: datetime) -> StartedTransfer:
    if not holding.is_live:
        raise invalid_transition(holding, LicenseEvent.TRANSFER)
    code = "ltc_" + secrets.token_urlsafe(24)
    transfer = Transfer(
        id="ltr_" + secrets.token_hex(12),
        license_id=holding.id,
        from_partner_id=holding.partner_id,
        code_hash=hash_transfer_code(code),
        created_at=at,
        expires_at=at + TRANSFER_LIFETIME,
    )
    return StartedTransfer(transfer, code)


def hash_transfer_code(code: str) -> str:
    # Codes carry 192 random bits, so a fast hash is enough: there is nothing to brute-force.
    return hashlib.sha256(code.strip().encode()).hexdigest()


def check_acceptable(transfer: Transfer | None, *, receiver_id: str, at: datetime) -> Transfer:
    """Refuse unknown, used, cancelled or expired codes, and accepting one's own transfer."""
    if transfer is None or transfer.status != TransferStatus.PENDING:
        raise DomainError(
            ErrorCode.TRANSFER_CODE_INVALID,
            "This transfer code is unknown, already used or cancelled.",
            "code",
        )
    if at >= transfer.expires_at:
        raise DomainError(
            ErrorCode.TRANSFER_CODE_EXPIRED,
            f"This transfer code expired at {transfer.expires_at.isoformat()}; ask the holder for a new one.",
            "code",
        )
    if transfer.from_partner_id == receiver_id:
        raise DomainError(ErrorCode.OWN_TRANSFER, "You cannot accept your own license transfer.", "code")
    return transfer
