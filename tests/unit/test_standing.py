"""The standing machine on plain values (see the README: account standing)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import DomainError, ErrorCode
from domain.standing import Action, Standing, StandingEvent, StandingState, apply_standing_event

T0 = datetime(2026, 7, 1, tzinfo=UTC)
NEW = Standing(StandingState.NO_PAYMENT_METHOD)


def test_adding_a_card_makes_a_new_partner_good() -> None:
    good = apply_standing_event(NEW, StandingEvent.PAYMENT_METHOD_ADDED, at=T0)
    assert (good.state, good.since, good.blocked_actions()) == (StandingState.GOOD, T0, [])
    again = apply_standing_event(good, StandingEvent.PAYMENT_METHOD_ADDED, at=T0 + timedelta(days=1))
    assert again == good  # a second card changes nothing


def test_past_due_names_its_invoice_and_blocks_acquiring_only() -> None:
    good = apply_standing_event(NEW, StandingEvent.PAYMENT_METHOD_ADDED, at=T0)
    late = apply_standing_event(good, StandingEvent.INVOICE_PAST_DUE, at=T0, invoice_id="inv_1")
    later = apply_standing_event(
        late, StandingEvent.INVOICE_PAST_DUE, at=T0 + timedelta(days=30), invoice_id="inv_2"
    )
    assert (later.reason_invoice_id, later.since) == ("inv_1", T0)
    assert later.blocked_actions() == [
        (Action.ISSUE, ErrorCode.ACCOUNT_PAST_DUE),
        (Action.ASSIGN, ErrorCode.ACCOUNT_PAST_DUE),
        (Action.ACCEPT_TRANSFER, ErrorCode.ACCOUNT_PAST_DUE),
    ]
    assert later.allowed_actions() == [Action.REVOKE, Action.UNASSIGN, Action.TRANSFER_OUT]
    with pytest.raises(DomainError) as refused:
        later.require(Action.ISSUE)
    assert refused.value.code is ErrorCode.ACCOUNT_PAST_DUE and "inv_1" in refused.value.message
    later.require(Action.REVOKE)


def test_removing_the_last_card_while_past_due_stays_past_due() -> None:
    late = apply_standing_event(NEW, StandingEvent.INVOICE_PAST_DUE, at=T0, invoice_id="inv_9")
    still = apply_standing_event(late, StandingEvent.LAST_PAYMENT_METHOD_REMOVED, at=T0)
    assert still.state is StandingState.PAST_DUE


@pytest.mark.parametrize(
    ("has_card", "after"), [(True, StandingState.GOOD), (False, StandingState.NO_PAYMENT_METHOD)]
)
def test_settling_returns_to_good_or_no_payment_method(has_card: bool, after: StandingState) -> None:
    late = apply_standing_event(NEW, StandingEvent.INVOICE_PAST_DUE, at=T0, invoice_id="inv_9")
    settled = apply_standing_event(
        late, StandingEvent.PAST_DUE_SETTLED, at=T0 + timedelta(days=2), has_payment_method=has_card
    )
    assert (settled.state, settled.reason_invoice_id, settled.since) == (after, None, T0 + timedelta(days=2))


def test_settling_when_nothing_is_past_due_is_an_invalid_transition() -> None:
    with pytest.raises(DomainError) as refused:
        apply_standing_event(NEW, StandingEvent.PAST_DUE_SETTLED, at=T0)
    assert refused.value.code is ErrorCode.INVALID_TRANSITION


def test_no_payment_method_blocks_with_its_own_code() -> None:
    with pytest.raises(DomainError) as refused:
        NEW.require(Action.ASSIGN)
    assert refused.value.code is ErrorCode.NO_PAYMENT_METHOD


def test_settling_one_of_two_past_due_invoices_stays_past_due_naming_the_oldest_left() -> None:
    late = Standing(StandingState.PAST_DUE, T0, "inv_july")
    settled = apply_standing_event(
        late, StandingEvent.PAST_DUE_SETTLED, at=T0 + timedelta(days=40), oldest_past_due="inv_august"
    )
    assert settled == Standing(StandingState.PAST_DUE, T0, "inv_august")
    assert settled.differs_from(late)
