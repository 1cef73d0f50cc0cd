"""Cards on file through GraphQL, against a real localstripe: add, list, make primary, remove."""

from __future__ import annotations

from app.devstripe import LocalStripe
from domain.clock import SettableClock
from persistence.database import Database
from persistence.unit_of_work import UnitOfWork
from tests.integration.conftest import ADD_PAYMENT_METHOD, Api, PartnerAccess, add_card, enrol
from tests.integration.license_operations import issue
from tests.integration.payment_operations import (
    MASTERCARD,
    PAY,
    REMOVE,
    SET_PRIMARY,
    SETUP,
    VISA,
    card_typed_in,
    cards_on_file,
    payload,
    standing,
    stripe_object,
)


async def customer_of(localstripe: LocalStripe, card_id: str) -> str:
    return str((await stripe_object(localstripe, f"/v1/payment_methods/{card_id}"))["customer"])


async def test_setup_returns_a_setup_intent_client_secret_for_the_partners_stripe_customer(
    api: Api, partner: PartnerAccess, localstripe: LocalStripe
) -> None:
    setup = (await api.data(SETUP, token=partner.token))["createPaymentMethodSetup"]
    again = (await api.data(SETUP, token=partner.token))["createPaymentMethodSetup"]

    assert setup["errors"] == [] and setup["clientSecret"].startswith(f"{setup['setupIntentId']}_secret_")
    first = await stripe_object(localstripe, f"/v1/setup_intents/{setup['setupIntentId']}")
    second = await stripe_object(localstripe, f"/v1/setup_intents/{again['setupIntentId']}")
    # One customer per partner, created on first need, with the partner's id on it.
    assert first["customer"] == second["customer"]
    customer = await stripe_object(localstripe, f"/v1/customers/{first['customer']}")
    assert customer["metadata"] == {"partner_id": partner.id}


async def test_a_card_typed_in_the_browser_is_attached_and_mirrored_and_lifts_the_pause(
    api: Api, partner: PartnerAccess, localstripe: LocalStripe, clock: SettableClock
) -> None:
    assert (await standing(api, partner.token))["state"] == "NO_PAYMENT_METHOD"
    typed = await card_typed_in(localstripe, VISA)

    card = await add_card(api, partner.token, typed)

    assert card == {
        "id": typed,
        "brand": "visa",
        "last4": "4242",
        "expMonth": 11,
        "expYear": 2031,
        "primary": True,
        "createdAt": clock.now().isoformat(),
        "removedAt": None,
    }
    assert (await standing(api, partner.token))["state"] == "GOOD"
    assert await cards_on_file(api, partner.token) == [card]
    stripe_customer = await customer_of(localstripe, typed)
    customer = await stripe_object(localstripe, f"/v1/customers/{stripe_customer}")
    assert customer["invoice_settings"]["default_payment_method"] == typed
    assert await issue(api, partner.token)


async def test_a_second_card_is_not_primary_unless_asked_and_set_primary_moves_stripes_default(
    api: Api, partner: PartnerAccess, localstripe: LocalStripe
) -> None:
    first = await add_card(api, partner.token, await card_typed_in(localstripe, VISA))
    second = await add_card(api, partner.token, await card_typed_in(localstripe, MASTERCARD))
    assert (first["primary"], second["primary"], second["last4"]) == (True, False, "4444")

    made = await payload(api, partner.token, SET_PRIMARY, paymentMethodId=second["id"])

    assert made["errors"] == [] and made["paymentMethod"]["primary"] is True
    assert [(c["id"], c["primary"]) for c in await cards_on_file(api, partner.token)] == [
        (first["id"], False),
        (second["id"], True),
    ]
    customer = await stripe_object(
        localstripe, f"/v1/customers/{await customer_of(localstripe, second['id'])}"
    )
    assert customer["invoice_settings"]["default_payment_method"] == second["id"]
    third = await add_card(api, partner.token, await card_typed_in(localstripe, VISA), make_primary=True)
    assert [c["id"] for c in await cards_on_file(api, partner.token) if c["primary"]] == [third["id"]]


async def test_removing_the_primary_promotes_the_next_card_and_removing_the_last_pauses_issuing(
    api: Api, partner: PartnerAccess, localstripe: LocalStripe
) -> None:
    first = await add_card(api, partner.token, await card_typed_in(localstripe, VISA))
    second = await add_card(api, partner.token, await card_typed_in(localstripe, MASTERCARD))

    removed = await payload(api, partner.token, REMOVE, paymentMethodId=first["id"])

    assert removed["errors"] == [] and removed["paymentMethod"]["removedAt"] is not None
    assert (await stripe_object(localstripe, f"/v1/payment_methods/{first['id']}"))["customer"] is None
    [left] = await cards_on_file(api, partner.token)
    assert (left["id"], left["primary"]) == (second["id"], True)
    assert (await standing(api, partner.token))["state"] == "GOOD"

    assert (await payload(api, partner.token, REMOVE, paymentMethodId=second["id"]))["errors"] == []
    assert await cards_on_file(api, partner.token) == []
    paused = await standing(api, partner.token)
    assert paused["state"] == "NO_PAYMENT_METHOD"
    assert {"action": "ISSUE", "code": "NO_PAYMENT_METHOD"} in paused["blockedActions"]


async def test_removing_a_card_twice_is_not_found_the_second_time(
    api: Api, partner: PartnerAccess, localstripe: LocalStripe
) -> None:
    card = await add_card(api, partner.token, await card_typed_in(localstripe, VISA))
    assert (await payload(api, partner.token, REMOVE, paymentMethodId=card["id"]))["errors"] == []

    again = await payload(api, partner.token, REMOVE, paymentMethodId=card["id"])

    assert again["paymentMethod"] is None
    assert again["errors"] == [
        {
            "code": "PAYMENT_METHOD_NOT_FOUND",
            "message": f"No payment method '{card['id']}' is on file.",
            "field": "paymentMethodId",
        }
    ]


async def test_a_payment_method_that_does_not_exist_is_refused_and_nothing_changes(
    api: Api, partner: PartnerAccess
) -> None:
    for unknown in ("pm_doesNotExist123", "card_0123456789abcdef"):
        refused = await payload(api, partner.token, ADD_PAYMENT_METHOD, paymentMethodId=unknown)
        assert (refused["paymentMethod"], refused["errors"][0]["code"]) == (None, "PAYMENT_METHOD_NOT_FOUND")
    assert await cards_on_file(api, partner.token) == []
    assert (await standing(api, partner.token))["state"] == "NO_PAYMENT_METHOD"


async def test_a_malformed_card_id_is_invalid_input_before_stripe_is_called(
    api: Api, partner: PartnerAccess, database: Database
) -> None:
    for malformed in ("pm_" + "x" * 10_000, "not-a-card", "pm_card_visa/../x", "", "pm_card_visa "):
        for operation in (ADD_PAYMENT_METHOD, SET_PRIMARY, REMOVE):
            refused = await payload(api, partner.token, operation, paymentMethodId=malformed)
            assert refused["paymentMethod"] is None
            [error] = refused["errors"]
            assert (error["code"], error["field"]) == ("INVALID_INPUT", "paymentMethodId")
            assert "x" * 300 not in error["message"]
    async with UnitOfWork(database, read_only=True) as uow:
        assert await uow.customers.get(partner.id) is None  # no Stripe customer was made for the card
    assert await cards_on_file(api, partner.token) == []
    assert (await standing(api, partner.token))["state"] == "NO_PAYMENT_METHOD"


async def test_paying_an_invoice_with_a_malformed_card_id_is_invalid_input(
    api: Api, good_partner: PartnerAccess
) -> None:
    refused = await payload(
        api, good_partner.token, PAY, invoiceId="inv_missing", paymentMethodId="pm_" + "x" * 10_000
    )
    assert [(e["code"], e["field"]) for e in refused["errors"]] == [("INVALID_INPUT", "paymentMethodId")]


async def test_another_partners_card_can_be_neither_added_nor_removed_nor_made_primary(
    api: Api, partner: PartnerAccess, staff_token: str, localstripe: LocalStripe
) -> None:
    other = await enrol(api, staff_token, "Other Agency")
    theirs = await add_card(api, other.token, await card_typed_in(localstripe, VISA))

    added = await payload(api, partner.token, ADD_PAYMENT_METHOD, paymentMethodId=theirs["id"])
    removed = await payload(api, partner.token, REMOVE, paymentMethodId=theirs["id"])
    primary = await payload(api, partner.token, SET_PRIMARY, paymentMethodId=theirs["id"])

    assert added["errors"][0]["code"] == "PAYMENT_METHOD_NOT_USABLE"
    assert removed["errors"][0]["code"] == primary["errors"][0]["code"] == "PAYMENT_METHOD_NOT_FOUND"
    assert await cards_on_file(api, other.token) == [theirs]
    assert (await stripe_object(localstripe, f"/v1/payment_methods/{theirs['id']}"))["customer"] is not None


async def test_adding_a_card_with_an_idempotency_key_twice_adds_it_once(
    api: Api, partner: PartnerAccess, localstripe: LocalStripe
) -> None:
    typed = await card_typed_in(localstripe, VISA)
    variables = {"input": {"paymentMethodId": typed, "idempotencyKey": "add-card-1"}}

    first = (await api.data(ADD_PAYMENT_METHOD, variables, partner.token))["addPaymentMethod"]
    replay = (await api.data(ADD_PAYMENT_METHOD, variables, partner.token))["addPaymentMethod"]
    other = await payload(
        api, partner.token, ADD_PAYMENT_METHOD, paymentMethodId="pm_other", idempotencyKey="add-card-1"
    )

    assert first == replay and first["errors"] == []
    assert other["errors"][0]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert len(await cards_on_file(api, partner.token)) == 1


async def test_every_card_change_is_an_event_and_only_real_standing_changes_are_standing_events(
    api: Api, partner: PartnerAccess, database: Database, localstripe: LocalStripe
) -> None:
    first = await add_card(api, partner.token, await card_typed_in(localstripe, VISA))
    second = await add_card(api, partner.token, await card_typed_in(localstripe, MASTERCARD))
    await payload(api, partner.token, SET_PRIMARY, paymentMethodId=second["id"])
    await payload(api, partner.token, SET_PRIMARY, paymentMethodId=second["id"])  # already primary
    await payload(api, partner.token, REMOVE, paymentMethodId=second["id"])  # not the last: first promoted

    async with UnitOfWork(database, read_only=True) as uow:
        events = await uow.events.after(partner.id, 0)

    assert [(e.action, e.subject) for e in events if e.stream == "payment_method"] == [
        ("added", first["id"]),
        ("made_primary", first["id"]),
        ("added", second["id"]),
        ("made_primary", second["id"]),
        ("removed", second["id"]),
        ("made_primary", first["id"]),
    ]
    assert [e.action for e in events if e.stream == "standing"] == ["payment_method_added"]
