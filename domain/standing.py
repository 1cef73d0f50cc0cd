"""Account standing: whether a partner may acquire and place licenses (see the README).

The state lives on the partner. Issuing, assigning and accepting a transfer need `good` standing;
revoking, unassigning and transferring out are never blocked, so a partner can always shrink its bill.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from statemachine import State, StateMachine
from statemachine.exceptions import TransitionNotAllowed

from domain.errors import DomainError, ErrorCode
from domain.events import DomainEvent


class StandingState(StrEnum):
    NO_PAYMENT_METHOD = "no_payment_method"
    GOOD = "good"
    PAST_DUE = "past_due"


class StandingEvent(StrEnum):
    PAYMENT_METHOD_ADDED = "payment_method_added"
    LAST_PAYMENT_METHOD_REMOVED = "last_payment_method_removed"
    INVOICE_PAST_DUE = "invoice_past_due"
    PAST_DUE_SETTLED = "past_due_settled"


class Action(StrEnum):
    """What a partner does to licenses, as far as standing is concerned."""

    ISSUE = "issue"
    ASSIGN = "assign"
    ACCEPT_TRANSFER = "accept_transfer"
    REVOKE = "revoke"
    UNASSIGN = "unassign"
    TRANSFER_OUT = "transfer_out"


# Acquiring or placing a license adds to the bill, so it needs a card and nothing past due.
GATED_ACTIONS = (Action.ISSUE, Action.ASSIGN, Action.ACCEPT_TRANSFER)


class StandingMachine(StateMachine):
    """The standing of one partner. Self-transitions are internal: they change nothing."""

    no_payment_method = State(initial=True)
    good = State()
    past_due = State()

    payment_method_added = (
        no_payment_method.to(good) | good.to.itself(internal=True) | past_due.to.itself(internal=True)
    )
    # Past due stays past due: the debt, not the card, is what blocks.
    last_payment_method_removed = (
        good.to(no_payment_method)
        | no_payment_method.to.itself(internal=True)
        | past_due.to.itself(internal=True)
    )
    invoice_past_due = good.to(past_due) | no_payment_method.to(past_due) | past_due.to.itself(internal=True)
    # One past-due invoice settled: standing is restored only when no other is still past due.
    past_due_settled = (
        past_due.to.itself(internal=True, cond="still_past_due")
        | past_due.to(good, cond="has_payment_method")
        | past_due.to(no_payment_method, unless="has_payment_method")
    )

    def has_payment_method(self, has_payment_method: bool = False) -> bool:
        return has_payment_method

    def still_past_due(self, still_past_due: bool = False) -> bool:
        return still_past_due


@dataclass
class StandingRecord:
    """The mutable model the machine drives; `Standing` is its read-only view."""

    state: str
    since: datetime | None = None
    reason_invoice_id: str | None = None


@dataclass(frozen=True)
class Standing:
    """Explainable standing: the state, since when, and which invoice caused it (when past due)."""

    state: StandingState
    since: datetime | None = None
    reason_invoice_id: str | None = None

    def differs_from(self, other: Standing) -> bool:
        """A change worth telling: the state or its reason (a self-transition changes neither)."""
        return (self.state, self.reason_invoice_id) != (other.state, other.reason_invoice_id)

    def blocked_actions(self) -> list[tuple[Action, ErrorCode]]:
        if self.state is StandingState.GOOD:
            return []
        code = (
            ErrorCode.ACCOUNT_PAST_DUE
            if self.state is StandingState.PAST_DUE
            else ErrorCode.NO_PAYMENT_METHOD
        )
        return [(action, code) for action in GATED_ACTIONS]

    def allowed_actions(self) -> list[Action]:
        blocked = {action for action, _ in self.blocked_actions()}
        return [action for action in Action if action not in blocked]

    def require(self, action: Action) -> None:
        """Raise the typed refusal when `action` is blocked by this standing."""
        for blocked, code in self.blocked_actions():
            if blocked is action:
                raise DomainError(code, self._refusal(action))

    def _refusal(self, action: Action) -> str:
        doing = {
            Action.ISSUE: "Issuing licenses",
            Action.ASSIGN: "Assigning licenses",
            Action.ACCEPT_TRANSFER: "Accepting license transfers",
        }.get(action, action.value)
        if self.state is StandingState.PAST_DUE:
            invoice = f"Invoice {self.reason_invoice_id}" if self.reason_invoice_id else "An invoice"
            return f"{doing} is paused: {invoice} is past due. Pay it to continue."
        return f"{doing} is paused until a payment method is on file."


def apply_standing_event(
    standing: Standing,
    event: StandingEvent,
    *,
    at: datetime,
    invoice_id: str | None = None,
    has_payment_method: bool = False,
    oldest_past_due: str | None = None,
) -> Standing:
    """The standing after `event`; `since` moves only when the state changes.

    `oldest_past_due` is the partner's oldest invoice still past due after the change: while past due,
    it is the reason, so paying the invoice that caused it moves the reason to the next one.
    """
    record = StandingRecord(standing.state.value, standing.since, standing.reason_invoice_id)
    machine = StandingMachine(record)
    try:
        machine.send(
            event.value, has_payment_method=has_payment_method, still_past_due=oldest_past_due is not None
        )
    except TransitionNotAllowed as error:
        raise DomainError(
            ErrorCode.INVALID_TRANSITION,
            f"Standing is {standing.state.value}; '{event.value}' does not apply.",
        ) from error
    state = StandingState(record.state)
    if state is StandingState.PAST_DUE:
        # Without the oldest known, the first invoice that went past due stays the reason.
        reason = standing.reason_invoice_id if standing.state is StandingState.PAST_DUE else invoice_id
        reason = oldest_past_due or reason or invoice_id
    else:
        reason = None
    since = standing.since if state is standing.state else at
    return Standing(state=state, since=since, reason_invoice_id=reason)


@dataclass(frozen=True)
class StandingMove:
    """A standing after an event, and the event worth recording (None when neither state nor reason
    changed: a card added while past due, a second invoice going past due)."""

    standing: Standing
    event: DomainEvent | None


def move_standing(
    partner_id: str,
    current: Standing,
    event: StandingEvent,
    *,
    at: datetime,
    invoice_id: str | None = None,
    has_payment_method: bool = False,
    oldest_past_due: str | None = None,
) -> StandingMove:
    """Drive the machine and produce its "standing" event (see `apply_standing_event`)."""
    moved = apply_standing_event(
        current,
        event,
        at=at,
        invoice_id=invoice_id,
        has_payment_method=has_payment_method,
        oldest_past_due=oldest_past_due,
    )
    if not moved.differs_from(current):
        return StandingMove(current, None)
    payload = {"invoice_id": invoice_id} if invoice_id else {}
    if moved.reason_invoice_id:
        payload["reason_invoice_id"] = moved.reason_invoice_id
    change = DomainEvent(
        partner_id, "standing", partner_id, event.value, at, current.state.value, moved.state.value, payload
    )
    return StandingMove(moved, change)
