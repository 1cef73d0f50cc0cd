"""Charge attempts against the in-memory gateway, which can lose an answer after moving the money (a
timeout localstripe cannot play): our attempt rows and stable keys still charge an invoice once."""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta

import pytest

from domain.billing import BillingMonth
from domain.clock import SettableClock
from domain.errors import DomainError, ErrorCode
from domain.invoices import Invoice, InvoiceStatus
from domain.licenses import IssueItem
from domain.payments import AttemptStatus, ChargeTrigger, PaymentAttempt, attempt_idempotency_key
from domain.principals import Principal
from domain.standing import StandingState
from domain.support import SupportContact
from persistence.database import Database
from persistence.unit_of_work import UnitOfWork
from resolvers.billing import finalize_partner_month
from resolvers.context import RequestContext
from resolvers.dunning import run_dunning
from resolvers.invoice_payments import pay_invoice
from resolvers.licenses import issue_licenses
from resolvers.partners import enrol_partner
from resolvers.payments import add_payment_method
from tests.integration.payment_operations import first_of
from tests.memory_gateway import InMemoryGateway, Outage


async def open_july_invoice(
    database: Database, clock: SettableClock, gateway: InMemoryGateway, catalog: None
) -> tuple[RequestContext, Invoice]:
    async with UnitOfWork(database) as uow:
        partner = await enrol_partner(
            uow, name="Memory Agency", billing_zone="UTC", currency="usd", now=clock.now()
        )
    ctx = RequestContext(
        database=database,
        clock=clock,
        principal=Principal("tok_memory", partner.id, False),
        request_id=secrets.token_hex(4),
        support=SupportContact("help", "help@example.com", "https://example.com"),
        gateway=gateway,
    )
    await add_payment_method(ctx, payment_method_id="pm_card_visa")
    await issue_licenses(ctx, items=[IssueItem("jetpack-backup", 2)])
    clock.advance_to(first_of(8))
    await finalize_partner_month(database, partner.id, BillingMonth(2026, 7), now=clock.now())
    async with UnitOfWork(database, read_only=True) as uow:
        invoice = await uow.invoices.for_month(partner.id, BillingMonth(2026, 7))
    assert invoice is not None and invoice.status is InvoiceStatus.OPEN
    return ctx, invoice


@pytest.fixture
def gateway(memory_gateway: InMemoryGateway) -> InMemoryGateway:
    memory_gateway.outage = None
    return memory_gateway


async def attempts_of(database: Database, invoice_id: str) -> list[PaymentAttempt]:
    async with UnitOfWork(database, read_only=True) as uow:
        return await uow.payment_attempts.for_invoice(invoice_id)


async def test_a_charge_whose_answer_was_lost_is_resumed_by_its_payment_intent_and_money_moves_once(
    database: Database, clock: SettableClock, catalog: None, gateway: InMemoryGateway
) -> None:
    ctx, invoice = await open_july_invoice(database, clock, gateway, catalog)
    gateway.outage = Outage.CONFIRM_ANSWER_LOST

    with pytest.raises(DomainError) as lost:
        await pay_invoice(ctx, invoice_id=invoice.id)

    assert lost.value.code is ErrorCode.PAYMENT_GATEWAY_UNAVAILABLE
    assert len(gateway.succeeded_charges(invoice.id)) == 1  # Stripe charged; we do not know it yet
    [unknown] = await attempts_of(database, invoice.id)
    assert unknown.status is AttemptStatus.UNKNOWN
    assert unknown.payment_intent_id in gateway.intents  # stored before it was confirmed

    gateway.outage = None
    paid = await pay_invoice(ctx, invoice_id=invoice.id)

    assert paid.status is InvoiceStatus.PAID
    assert len(gateway.succeeded_charges(invoice.id)) == 1
    [settled] = await attempts_of(database, invoice.id)
    assert (settled.number, settled.status) == (1, AttemptStatus.SUCCEEDED)
    assert [c.idempotency_key for c in gateway.charges if c.invoice_id == invoice.id] == [
        attempt_idempotency_key(invoice.id, 1)
    ]


async def test_a_pending_attempt_blocks_a_second_charge_until_it_is_abandoned_then_it_is_resent(
    database: Database, clock: SettableClock, catalog: None, gateway: InMemoryGateway
) -> None:
    ctx, invoice = await open_july_invoice(database, clock, gateway, catalog)
    async with UnitOfWork(database) as uow:  # a collector stored its attempt, then the process died
        [card] = await uow.payment_methods.active(invoice.partner_id)
        await uow.payment_attempts.add(
            PaymentAttempt(
                id="pat_" + secrets.token_hex(8),
                invoice_id=invoice.id,
                partner_id=invoice.partner_id,
                payment_method_id=card.id,
                number=1,
                idempotency_key=attempt_idempotency_key(invoice.id, 1),
                status=AttemptStatus.PENDING,
                trigger=ChargeTrigger.MONTH_CLOSE,
                amount=invoice.total,
                currency=invoice.currency,
                created_at=clock.now(),
            )
        )

    with pytest.raises(DomainError) as in_flight:
        await pay_invoice(ctx, invoice_id=invoice.id)
    assert in_flight.value.code is ErrorCode.CONFLICT
    assert gateway.succeeded_charges(invoice.id) == []

    clock.advance_to(clock.now() + ctx.collection.in_flight)
    paid = await pay_invoice(ctx, invoice_id=invoice.id)

    assert paid.status is InvoiceStatus.PAID
    assert [(a.number, a.status) for a in await attempts_of(database, invoice.id)] == [
        (1, AttemptStatus.SUCCEEDED)
    ]
    assert len(gateway.succeeded_charges(invoice.id)) == 1


async def test_pay_now_with_a_chosen_card_charges_only_that_card(
    database: Database, clock: SettableClock, catalog: None, gateway: InMemoryGateway
) -> None:
    ctx, invoice = await open_july_invoice(database, clock, gateway, catalog)
    second = await add_payment_method(ctx, payment_method_id="pm_card_mastercard")

    paid = await pay_invoice(ctx, invoice_id=invoice.id, payment_method_id=second.stripe_id)

    assert paid.status is InvoiceStatus.PAID
    assert [c.payment_method_id for c in gateway.charges if c.invoice_id == invoice.id] == [second.stripe_id]
    assert paid.paid_at == clock.now() and clock.now() - first_of(8) == timedelta(0)


async def lose_a_charge_for_two_days(
    ctx: RequestContext, invoice: Invoice, gateway: InMemoryGateway, clock: SettableClock
) -> None:
    """Stripe charged, its answer was lost; two days on, Stripe has forgotten the keys (after 24 hours)."""
    gateway.outage = Outage.CONFIRM_ANSWER_LOST
    with pytest.raises(DomainError):
        await pay_invoice(ctx, invoice_id=invoice.id)
    gateway.outage = None
    clock.advance_to(clock.now() + timedelta(days=2))
    gateway.forget_idempotency_keys()


async def test_a_charge_lost_for_more_than_a_day_is_resumed_by_id_when_stripe_has_forgotten_its_key(
    database: Database, clock: SettableClock, catalog: None, gateway: InMemoryGateway
) -> None:
    ctx, invoice = await open_july_invoice(database, clock, gateway, catalog)
    await lose_a_charge_for_two_days(ctx, invoice, gateway, clock)

    report = await run_dunning(database, gateway, now=clock.now(), policy=ctx.collection)

    assert report.collected.paid == 1
    assert len(gateway.succeeded_charges(invoice.id)) == 1
    assert [i.id for i in gateway.intents.values() if i.invoice_id == invoice.id] == [
        a.payment_intent_id for a in await attempts_of(database, invoice.id)
    ]


async def test_a_payment_intent_whose_creation_answer_was_lost_is_created_again_and_charged_once(
    database: Database, clock: SettableClock, catalog: None, gateway: InMemoryGateway
) -> None:
    ctx, invoice = await open_july_invoice(database, clock, gateway, catalog)
    gateway.outage = Outage.ANSWER_LOST
    with pytest.raises(DomainError):
        await pay_invoice(ctx, invoice_id=invoice.id)
    [unknown] = await attempts_of(database, invoice.id)
    assert (unknown.status, unknown.payment_intent_id) == (AttemptStatus.UNKNOWN, None)
    assert gateway.succeeded_charges(invoice.id) == []  # created, never confirmed: no money moved
    gateway.outage = None
    gateway.forget_idempotency_keys()

    paid = await pay_invoice(ctx, invoice_id=invoice.id)

    assert paid.status is InvoiceStatus.PAID
    assert len(gateway.succeeded_charges(invoice.id)) == 1
    [settled] = await attempts_of(database, invoice.id)
    assert settled.status is AttemptStatus.SUCCEEDED


async def two_collectors(ctx: RequestContext, invoice: Invoice, gateway: InMemoryGateway) -> list[object]:
    """Two payInvoice calls at once: the first is held inside Stripe until the second has answered."""
    gateway.confirm_gate = asyncio.Event()
    gateway.confirms_waiting = 0
    first = asyncio.create_task(pay_invoice(ctx, invoice_id=invoice.id))
    while gateway.confirms_waiting == 0:
        await asyncio.sleep(0.01)
    second: object
    try:
        # Bounded: a second collector that also reached Stripe would wait at the gate for ever.
        second = await asyncio.wait_for(pay_invoice(ctx, invoice_id=invoice.id), timeout=10)
    except DomainError as error:
        second = error.code
    finally:
        gateway.confirm_gate.set()
    result = await first
    gateway.confirm_gate = None
    return [result.status, second]


async def test_two_collectors_on_one_invoice_one_charges_and_the_other_gets_conflict(
    database: Database, clock: SettableClock, catalog: None, gateway: InMemoryGateway
) -> None:
    ctx, invoice = await open_july_invoice(database, clock, gateway, catalog)

    assert await two_collectors(ctx, invoice, gateway) == [InvoiceStatus.PAID, ErrorCode.CONFLICT]
    assert len(gateway.succeeded_charges(invoice.id)) == 1


async def test_resuming_a_lost_charge_makes_it_in_flight_again_so_a_concurrent_collector_gets_conflict(
    database: Database, clock: SettableClock, catalog: None, gateway: InMemoryGateway
) -> None:
    ctx, invoice = await open_july_invoice(database, clock, gateway, catalog)
    await lose_a_charge_for_two_days(ctx, invoice, gateway, clock)

    assert await two_collectors(ctx, invoice, gateway) == [InvoiceStatus.PAID, ErrorCode.CONFLICT]
    assert len(gateway.succeeded_charges(invoice.id)) == 1
    assert len(await attempts_of(database, invoice.id)) == 1


async def test_a_charge_stripe_refuses_is_a_failed_attempt_with_its_reason_and_the_invoice_goes_past_due(
    database: Database, clock: SettableClock, catalog: None, gateway: InMemoryGateway
) -> None:
    ctx, invoice = await open_july_invoice(database, clock, gateway, catalog)
    async with UnitOfWork(database, read_only=True) as uow:
        customer = await uow.customers.get(invoice.partner_id)
    del gateway.customers[str(customer)]  # Stripe no longer knows the customer: every charge is refused

    first = await run_dunning(database, gateway, now=clock.now(), policy=ctx.collection)
    second = await run_dunning(database, gateway, now=clock.now(), policy=ctx.collection)

    assert (first.collected.past_due, second.collected.past_due) == (1, 0)
    [refused] = await attempts_of(database, invoice.id)
    assert (refused.status, refused.failure_code) == (AttemptStatus.FAILED, "gateway_refused")
    assert refused.failure_message is not None and "no customer" in refused.failure_message
    async with UnitOfWork(database, read_only=True) as uow:
        owing = await uow.standing.get(invoice.partner_id)
        stored = await uow.invoices.get(invoice.partner_id, invoice.id)
    assert stored is not None and stored.status is InvoiceStatus.PAST_DUE
    assert owing is not None and (owing.state, owing.reason_invoice_id) == (
        StandingState.PAST_DUE,
        invoice.id,
    )
