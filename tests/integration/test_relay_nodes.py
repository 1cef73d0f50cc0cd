"""Relay object identification over HTTP: `node(id:)` and `nodes(ids:)` refetch every kind of object by
the same `id` the API already returned, within the caller's tenancy (README, "Relay")."""

from __future__ import annotations

from typing import Any

import pytest

from domain.clock import SettableClock
from domain.errors import DomainError, ErrorCode
from domain.licenses import new_license_id
from resolvers.nodes import NodeKind, node_kind, product_node_id
from resolvers.partners import new_partner_id
from tests.integration.conftest import Api, PartnerAccess, enrol
from tests.integration.license_operations import issue
from tests.integration.payment_operations import SET_PRIMARY, cards_on_file, close_july, july_invoice

FIELDS = """
  __typename id
  ... on Partner { name }
  ... on License { key state }
  ... on Invoice { number month status }
  ... on PaymentMethod { brand last4 primary }
  ... on Product { slug name }
"""
NODE = f"query($id: ID!) {{ node(id: $id) {{ {FIELDS} }} }}"
NODES = f"query($ids: [ID!]!) {{ nodes(ids: $ids) {{ {FIELDS} }} }}"
OBJECTS = """
query($key: String!) {
  viewer { id name }
  license(key: $key) { id key state }
  invoices(first: 1) { nodes { id number month status } }
  products { id slug name }
  viewer2: viewer { paymentMethods(first: 1) { nodes { id brand last4 primary } } }
}"""


async def objects_of(api: Api, partner: PartnerAccess, key: str) -> list[dict[str, Any]]:
    """The partner, a license, an invoice, a card and a product, each as its own query shows it."""
    data = await api.data(OBJECTS, {"key": key}, partner.token)
    product = next(p for p in data["products"] if p["slug"] == "jetpack-backup")
    return [
        {"__typename": "Partner", **data["viewer"]},
        {"__typename": "License", **data["license"]},
        {"__typename": "Invoice", **data["invoices"]["nodes"][0]},
        {"__typename": "PaymentMethod", **data["viewer2"]["paymentMethods"]["nodes"][0]},
        {"__typename": "Product", **product},
    ]


@pytest.fixture
async def july_objects(
    api: Api, staff_token: str, good_partner: PartnerAccess, clock: SettableClock
) -> list[dict[str, Any]]:
    """A partner in good standing with a license, July's invoice, its card, and a product it holds."""
    [key] = await issue(api, good_partner.token)
    await close_july(api, staff_token, clock)
    assert (await july_invoice(api, good_partner.token))["status"] == "PAID"
    return await objects_of(api, good_partner, key)


async def test_node_refetches_a_partner_license_invoice_card_and_product_by_their_ids(
    api: Api, good_partner: PartnerAccess, july_objects: list[dict[str, Any]]
) -> None:
    for shown in july_objects:
        refetched = (await api.data(NODE, {"id": shown["id"]}, good_partner.token))["node"]
        assert refetched == shown


async def test_nodes_refetches_them_all_in_the_order_asked(
    api: Api, good_partner: PartnerAccess, july_objects: list[dict[str, Any]]
) -> None:
    ids = [shown["id"] for shown in reversed(july_objects)]
    refetched = (await api.data(NODES, {"ids": ids}, good_partner.token))["nodes"]
    assert refetched == list(reversed(july_objects))


async def test_ids_are_unique_across_types_and_unchanged_so_mutations_still_take_them(
    api: Api, good_partner: PartnerAccess, july_objects: list[dict[str, Any]]
) -> None:
    assert len({shown["id"] for shown in july_objects}) == len(july_objects)
    card = next(shown for shown in july_objects if shown["__typename"] == "PaymentMethod")
    assert card["id"].startswith("pm_")  # the id Stripe.js returned and every card mutation takes
    body = await api.data(SET_PRIMARY, {"input": {"paymentMethodId": card["id"]}}, good_partner.token)
    assert body["setPrimaryPaymentMethod"]["errors"] == []
    assert [c["id"] for c in await cards_on_file(api, good_partner.token)] == [card["id"]]


async def test_another_partner_asking_for_these_ids_gets_null_never_the_object(
    api: Api, staff_token: str, july_objects: list[dict[str, Any]]
) -> None:
    stranger = await enrol(api, staff_token, "Other Agency")
    private = [shown for shown in july_objects if shown["__typename"] != "Product"]
    for shown in private:
        body = await api.call(NODE, {"id": shown["id"]}, stranger.token)
        assert body == {"data": {"node": None}}, shown["__typename"]
    body = await api.call(NODES, {"ids": [shown["id"] for shown in private]}, stranger.token)
    assert body == {"data": {"nodes": [None] * len(private)}}
    # The catalog is everyone's: a product refetches for any partner.
    product = next(shown for shown in july_objects if shown["__typename"] == "Product")
    assert (await api.data(NODE, {"id": product["id"]}, stranger.token))["node"] == product


async def test_staff_refetch_any_partners_account_and_invoice_but_not_its_licenses_or_cards(
    api: Api, staff_token: str, july_objects: list[dict[str, Any]]
) -> None:
    for shown in july_objects:
        if shown["__typename"] in {"Partner", "Invoice", "Product"}:
            assert (await api.data(NODE, {"id": shown["id"]}, staff_token))["node"] == shown
        else:  # licenses and cards are partner-token reads, as `license(key)` and `paymentMethods` are
            body = await api.call(NODE, {"id": shown["id"]}, staff_token)
            assert body["data"] == {"node": None}
            assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_a_well_formed_id_of_nothing_is_null(api: Api, partner: PartnerAccess) -> None:
    for unknown in ("lic_0123456789abcdef01234567", "inv_0123456789abcdef", "pm_nothing", "prd_no-such"):
        assert await api.call(NODE, {"id": unknown}, partner.token) == {"data": {"node": None}}


@pytest.mark.parametrize("malformed", ["", "x", "lic_", "42", "ptr_ab;DROP", "License:lic_1", "a" * 300])
async def test_a_malformed_id_is_invalid_input_not_a_server_error(
    api: Api, partner: PartnerAccess, malformed: str
) -> None:
    body = await api.call(NODE, {"id": malformed}, partner.token)
    assert body["data"] == {"node": None}
    [error] = body["errors"]
    assert error["extensions"]["code"] == "INVALID_INPUT" and error["extensions"]["field"] == "id"
    body = await api.call(NODES, {"ids": ["ptr_0123456789abcdef", malformed]}, partner.token)
    assert body["data"] is None or body["data"] == {"nodes": None}
    [error] = body["errors"]
    assert error["extensions"] == {"code": "INVALID_INPUT", "field": "ids[1]"}


async def test_more_than_100_ids_at_once_is_invalid_input(api: Api, partner: PartnerAccess) -> None:
    body = await api.call(NODES, {"ids": [f"lic_{n}" for n in range(101)]}, partner.token)
    [error] = body["errors"]
    assert error["extensions"] == {"code": "INVALID_INPUT", "field": "ids"}


async def test_node_needs_a_token(api: Api) -> None:
    body = await api.call(NODE, {"id": "lic_0123"})
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


# The kind of object is read from the id's prefix: ids minted today must keep matching it.
def test_new_partner_and_license_ids_are_global_ids_of_their_kind() -> None:
    assert node_kind(new_partner_id()) is NodeKind.PARTNER
    assert node_kind(new_license_id()) is NodeKind.LICENSE
    assert node_kind(product_node_id("jetpack-backup")) is NodeKind.PRODUCT


def test_stripe_card_ids_of_both_generations_are_payment_methods() -> None:
    assert node_kind("pm_1PqRsT2eZvKYlo2C") is NodeKind.PAYMENT_METHOD
    assert node_kind("card_0123456789abcdef") is NodeKind.PAYMENT_METHOD


@pytest.mark.parametrize("malformed", ["", "ptr_", "tok_abc", "inv_1 OR 1=1", "lic_" + "a" * 200])
def test_an_id_of_no_kind_names_the_field_at_fault(malformed: str) -> None:
    with pytest.raises(DomainError) as refused:
        node_kind(malformed, "ids[3]")
    assert (refused.value.code, refused.value.field) == (ErrorCode.INVALID_INPUT, "ids[3]")
