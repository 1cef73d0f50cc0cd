"""Every transition of every state machine produces the event that records it (the unit of work stores
what the transitions produced; use cases build no events). The walks are checked against the machines'
own transition lists, so a transition added later without its event fails here."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from domain.billing import BillingMonth, Costs, LicenseCounts
from domain.invoices import (
    Invoice,
    InvoiceEvent,
    InvoiceLifecycle,
    InvoiceStatus,
    finalize_invoice,
    move_invoice,
)
from domain.licenses import License, LicenseEvent, LicenseMachine, Transition, drive, issue_license
from domain.payments import CardChange, PaymentMethod, card_event
from domain.standing import (
    Standing,
    StandingEvent,
    StandingMachine,
    StandingRecord,
    StandingState,
    move_standing,
)

T0 = datetime(2026, 8, 1, 9, tzinfo=UTC)
LATER = T0 + timedelta(hours=1)
SITE, OTHER_SITE = "https://one.example", "https://two.example"


def machine_transitions(machine: object) -> set[tuple[str, str, str]]:
    states = machine.states  # type: ignore[attr-defined]
    return {(s.id, t.event, t.target.id) for s in states for t in s.transitions}


# -- licenses: (from, event, site) → to ---------------------------------------------------------------

LICENSE_WALK = [
    ("new", LicenseEvent.ISSUE, None, "issued"),
    ("new", LicenseEvent.RECEIVE, SITE, "assigned"),
    ("new", LicenseEvent.RECEIVE, None, "issued"),
    ("issued", LicenseEvent.ASSIGN, SITE, "assigned"),
    ("assigned", LicenseEvent.MOVE, OTHER_SITE, "assigned"),
    ("assigned", LicenseEvent.UNASSIGN, None, "issued"),
    ("issued", LicenseEvent.REVOKE, None, "revoked"),
    ("assigned", LicenseEvent.REVOKE, None, "revoked"),
    ("issued", LicenseEvent.TRANSFER, None, "transferred"),
    ("assigned", LicenseEvent.TRANSFER, None, "transferred"),
]


def holding_in(state: str) -> License:
    if state == "new":
        return License(id="lic_1", key="jetpack-backup_k", partner_id="ptr_a", product_slug="jetpack-backup")
    holding = issue_license(product_slug="jetpack-backup", partner_id="ptr_a", at=T0).license
    if state == "assigned":
        drive(holding, LicenseEvent.ASSIGN, at=T0, site=SITE)
    return holding


@pytest.mark.parametrize(("before", "event", "site", "after"), LICENSE_WALK)
def test_every_license_transition_produces_its_license_event(
    before: str, event: LicenseEvent, site: str | None, after: str
) -> None:
    holding = holding_in(before)
    previous_site = holding.site

    transition: Transition = drive(holding, event, at=LATER, site=site)
    produced = transition.event({"reason": "test"})

    assert (produced.stream, produced.subject, produced.partner_id) == ("license", holding.key, "ptr_a")
    assert (produced.action, produced.from_state, produced.to_state) == (
        event.value,
        None if before == "new" else before,
        after,
    )
    assert produced.at == LATER and produced.payload["reason"] == "test"
    assert produced.payload["site"] == holding.site
    assert produced.payload.get("previous_site", holding.site) == previous_site


def test_the_license_walk_covers_every_transition_of_the_machine() -> None:
    walked = {(before, event.value, after) for before, event, _, after in LICENSE_WALK}
    assert walked == machine_transitions(LicenseMachine(holding_in("new")))


# -- invoices ----------------------------------------------------------------------------------------

INVOICE = Invoice(
    id="inv_1",
    partner_id="ptr_a",
    month=BillingMonth(2026, 7),
    number="PL-A-2026-07",
    status=InvoiceStatus.DRAFT,
    zone="UTC",
    currency="usd",
    period_start=datetime(2026, 7, 1, tzinfo=UTC),
    period_end=T0,
    finalized_at=T0,
    due_at=T0,
    paid_at=None,
    total=1019,
    license_days=31,
    counts=LicenseCounts(0, 1),
    costs=Costs(0, 1019),
    lines=(),
)
INVOICE_WALK = sorted(machine_transitions(InvoiceLifecycle()))


@pytest.mark.parametrize(("before", "event", "after"), INVOICE_WALK)
def test_every_invoice_transition_produces_its_invoice_event(before: str, event: str, after: str) -> None:
    status = {"void_state": "void"}.get(before, before)
    invoice = dataclasses.replace(INVOICE, status=InvoiceStatus(status))

    moved = move_invoice(invoice, InvoiceEvent(event), at=LATER, payload={"attempt": 2})

    target = InvoiceStatus({"void_state": "void"}.get(after, after))
    assert moved.status is target
    assert (moved.event.stream, moved.event.subject, moved.event.action) == ("invoice", "inv_1", event)
    assert (moved.event.from_state, moved.event.to_state) == (status, target.value)
    assert moved.event.payload == {"amount": 1019, "currency": "usd", "attempt": 2}


def test_the_invoice_walk_is_every_transition_of_the_machine() -> None:
    assert {event for _, event, _ in INVOICE_WALK} == {event.value for event in InvoiceEvent}


# -- standing: an event exactly when the state or its reason changes ----------------------------------

NONE, GOOD, LATE = StandingState.NO_PAYMENT_METHOD, StandingState.GOOD, StandingState.PAST_DUE
ADDED, REMOVED = StandingEvent.PAYMENT_METHOD_ADDED, StandingEvent.LAST_PAYMENT_METHOD_REMOVED
WENT_LATE, SETTLED = StandingEvent.INVOICE_PAST_DUE, StandingEvent.PAST_DUE_SETTLED
# (from, event, has a card, oldest invoice still past due afterwards) → (to, reason)
STANDING_WALK = [
    (NONE, ADDED, True, None, GOOD, None),
    (GOOD, ADDED, True, None, GOOD, None),
    (LATE, ADDED, True, "inv_1", LATE, "inv_1"),
    (GOOD, REMOVED, False, None, NONE, None),
    (NONE, REMOVED, False, None, NONE, None),
    (LATE, REMOVED, False, "inv_1", LATE, "inv_1"),
    (GOOD, WENT_LATE, True, "inv_1", LATE, "inv_1"),
    (NONE, WENT_LATE, False, "inv_1", LATE, "inv_1"),
    (LATE, WENT_LATE, True, "inv_1", LATE, "inv_1"),
    (LATE, SETTLED, True, None, GOOD, None),
    (LATE, SETTLED, False, None, NONE, None),
    (LATE, SETTLED, True, "inv_2", LATE, "inv_2"),
]


@pytest.mark.parametrize(("before", "event", "has_card", "oldest", "after", "reason"), STANDING_WALK)
def test_every_standing_transition_produces_an_event_only_when_state_or_reason_changes(
    before: StandingState,
    event: StandingEvent,
    has_card: bool,
    oldest: str | None,
    after: StandingState,
    reason: str | None,
) -> None:
    current = Standing(before, T0, "inv_1" if before is LATE else None)

    move = move_standing(
        "ptr_a",
        current,
        event,
        at=LATER,
        invoice_id=oldest,
        has_payment_method=has_card,
        oldest_past_due=oldest,
    )

    assert (move.standing.state, move.standing.reason_invoice_id) == (after, reason)
    if (before, current.reason_invoice_id) == (after, reason):
        assert move.event is None and move.standing == current
        return
    assert move.event is not None
    assert (move.event.stream, move.event.subject, move.event.action) == ("standing", "ptr_a", event.value)
    assert (move.event.from_state, move.event.to_state) == (before.value, after.value)
    assert move.event.payload.get("reason_invoice_id") == reason
    assert move.standing.since == (T0 if after is before else LATER)


def test_the_standing_walk_covers_every_transition_of_the_machine() -> None:
    walked = {(before.value, event.value, after.value) for before, event, _, _, after, _ in STANDING_WALK}
    assert walked == machine_transitions(StandingMachine(StandingRecord(GOOD.value)))


# -- cards (no machine: each change is its own event) ------------------------------------------------


@pytest.mark.parametrize("change", list(CardChange))
def test_every_card_change_produces_its_payment_method_event(change: CardChange) -> None:
    card = PaymentMethod("card_1", "ptr_a", "pm_1", "visa", "4242", 12, 2034, False, 1, T0)

    produced = card_event(card, change, LATER)

    assert (produced.stream, produced.subject, produced.action, produced.at) == (
        "payment_method",
        "pm_1",
        change.value,
        LATER,
    )
    assert produced.payload == {"brand": "visa", "last4": "4242"}


@pytest.mark.parametrize(
    ("total", "walk"),
    [
        (1019, [("finalize", "draft", "open")]),
        (0, [("finalize", "draft", "open"), ("record_payment", "open", "paid")]),
    ],
)
def test_month_close_finalizes_through_the_machine_and_a_zero_invoice_is_paid_at_once(
    total: int, walk: list[tuple[str, str, str]]
) -> None:
    draft = dataclasses.replace(INVOICE, total=total)

    invoice, events = finalize_invoice(draft, at=LATER)

    assert [(e.action, e.from_state, e.to_state) for e in events] == walk
    assert invoice.status.value == walk[-1][2]
    assert invoice.paid_at == (LATER if total == 0 else None)
    assert events[0].payload == {
        "amount": total,
        "currency": "usd",
        "number": "PL-A-2026-07",
        "month": "2026-07",
    }
