"""Payment rules on plain objects: which card is charged next, who is promoted, the dunning calendar."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.errors import DomainError, ErrorCode
from domain.payments import (
    AttemptStatus,
    ChargeTrigger,
    CollectionPolicy,
    DunningStep,
    PaymentAttempt,
    PaymentMethod,
    attempt_idempotency_key,
    charge_order,
    dunning_decision,
    is_stale_pending,
    next_primary,
    validate_payment_method_id,
)

AUG_1 = datetime(2026, 8, 1, 0, 30, tzinfo=UTC)
POLICY = CollectionPolicy()


def card(position: int, *, primary: bool = False, removed: bool = False) -> PaymentMethod:
    return PaymentMethod(
        id=f"card_{position}",
        partner_id="ptr_1",
        stripe_id=f"pm_{position}",
        brand="visa",
        last4="4242",
        exp_month=12,
        exp_year=2034,
        is_primary=primary,
        position=position,
        created_at=AUG_1,
        removed_at=AUG_1 if removed else None,
    )


def test_the_primary_card_is_charged_first_then_the_others_in_the_order_they_were_added() -> None:
    cards = [card(1), card(2, primary=True), card(3), card(4, removed=True)]
    assert [c.id for c in charge_order(cards)] == ["card_2", "card_1", "card_3"]


def test_a_chosen_card_is_the_only_one_charged_and_it_must_be_on_file() -> None:
    cards = [card(1, primary=True), card(2), card(3, removed=True)]
    assert [c.id for c in charge_order(cards, "pm_2")] == ["card_2"]
    for missing in ("pm_3", "pm_nope"):
        with pytest.raises(DomainError) as refused:
            charge_order(cards, missing)
        assert refused.value.code is ErrorCode.PAYMENT_METHOD_NOT_FOUND


def test_removing_the_primary_promotes_the_earliest_added_card_left() -> None:
    cards = [card(1, removed=True), card(2, primary=True), card(3), card(4)]
    promoted = next_primary(cards, "card_2")
    assert promoted is not None and promoted.id == "card_3"
    assert next_primary([card(2, primary=True)], "card_2") is None


def test_each_attempt_has_its_own_stable_idempotency_key() -> None:
    assert attempt_idempotency_key("inv_1", 1) == "invoice-inv_1-attempt-1"
    assert attempt_idempotency_key("inv_1", 2) != attempt_idempotency_key("inv_1", 1)


def test_a_pending_attempt_is_in_flight_until_the_timeout_then_it_is_abandoned() -> None:
    attempt = PaymentAttempt(
        id="pat_1",
        invoice_id="inv_1",
        partner_id="ptr_1",
        payment_method_id="card_1",
        number=1,
        idempotency_key="invoice-inv_1-attempt-1",
        status=AttemptStatus.PENDING,
        trigger=ChargeTrigger.MONTH_CLOSE,
        amount=100,
        currency="usd",
        created_at=AUG_1,
    )
    assert not is_stale_pending(attempt, AUG_1 + timedelta(minutes=14), POLICY.in_flight)
    assert is_stale_pending(attempt, AUG_1 + timedelta(minutes=15), POLICY.in_flight)


@pytest.mark.parametrize(
    ("days", "retries_done", "expected"),
    [
        (0, 0, (DunningStep.WAIT, 0)),
        (2, 0, (DunningStep.WAIT, 0)),
        (3, 0, (DunningStep.RETRY, 1)),
        (3, 1, (DunningStep.WAIT, 1)),
        (7, 1, (DunningStep.RETRY, 2)),
        (14, 2, (DunningStep.RETRY, 3)),
        (20, 3, (DunningStep.WAIT, 3)),
        (28, 3, (DunningStep.REVOKE, 3)),
    ],
)
def test_dunning_retries_on_days_3_7_and_14_and_revokes_after_28_days(
    days: int, retries_done: int, expected: tuple[DunningStep, int]
) -> None:
    decision = dunning_decision(
        AUG_1, AUG_1 + timedelta(days=days), retries_done=retries_done, licenses_revoked=False, policy=POLICY
    )
    assert (decision.step, decision.retries_done) == expected


def test_a_run_that_missed_days_3_and_7_retries_once_not_twice() -> None:
    decision = dunning_decision(
        AUG_1, AUG_1 + timedelta(days=8), retries_done=0, licenses_revoked=False, policy=POLICY
    )
    assert (decision.step, decision.retries_done) == (DunningStep.RETRY, 2)


def test_licenses_are_revoked_once() -> None:
    decision = dunning_decision(
        AUG_1, AUG_1 + timedelta(days=40), retries_done=3, licenses_revoked=True, policy=POLICY
    )
    assert decision.step is DunningStep.WAIT


def test_day_2_ends_only_after_48_hours() -> None:
    almost = AUG_1 + timedelta(days=3) - timedelta(seconds=1)
    decision = dunning_decision(AUG_1, almost, retries_done=0, licenses_revoked=False, policy=POLICY)
    assert decision.step is DunningStep.WAIT


def test_policy_values_come_from_settings_and_are_checked() -> None:
    custom = CollectionPolicy(retry_days=(1, 2), revoke_after_days=5)
    decision = dunning_decision(
        AUG_1, AUG_1 + timedelta(days=5), retries_done=2, licenses_revoked=False, policy=custom
    )
    assert decision.step is DunningStep.REVOKE
    with pytest.raises(ValueError):
        CollectionPolicy(retry_days=(7, 3))
    with pytest.raises(ValueError):
        CollectionPolicy(revoke_after_days=0)


@pytest.mark.parametrize(
    "card_id", ["pm_card_visa", "pm_1PzX9a2eZvKYlo2C", "card_0123456789abcdef", "p" * 255]
)
def test_stripe_and_our_card_ids_are_well_formed(card_id: str) -> None:
    assert validate_payment_method_id(card_id) == card_id


@pytest.mark.parametrize(
    "card_id", ["", "p" * 256, "pm_" + "x" * 10_000, "pm-1", "pm_1\x00", "pm_é", "pm_1 "]
)
def test_malformed_card_ids_are_invalid_input_naming_the_field(card_id: str) -> None:
    with pytest.raises(DomainError) as refused:
        validate_payment_method_id(card_id)
    assert (refused.value.code, refused.value.field) == (ErrorCode.INVALID_INPUT, "paymentMethodId")
