"""Global ids name their kind by prefix (resolvers/nodes.py): ids minted today must keep matching it."""

from __future__ import annotations

import pytest

from domain.errors import DomainError, ErrorCode
from domain.licenses import new_license_id
from resolvers.nodes import NodeKind, node_kind, product_node_id
from resolvers.partners import new_partner_id


def test_new_partner_and_license_ids_are_global_ids_of_their_kind() -> None:
    assert node_kind(new_partner_id()) is NodeKind.PARTNER
    assert node_kind(new_license_id()) is NodeKind.LICENSE
    assert node_kind(product_node_id("jetpack-backup")) is NodeKind.PRODUCT


def test_stripe_card_ids_of_both_generations_are_payment_methods() -> None:
    assert node_kind("pm_1PqRsT2eZvKYlo2C") is NodeKind.PAYMENT_METHOD
    assert node_kind("card_0123456789abcdef") is NodeKind.PAYMENT_METHOD


@pytest.mark.parametrize("malformed", ["", "ptr_", "tok_abc", "inv_1 OR 1=1", "lic_" + "a" * 200])
def test_an_id_of_no_kind_is_invalid_input_on_the_field_named(malformed: str) -> None:
    with pytest.raises(DomainError) as refused:
        node_kind(malformed, "ids[3]")
    assert (refused.value.code, refused.value.field) == (ErrorCode.INVALID_INPUT, "ids[3]")
