"""`node(id:)` and `nodes(ids:)`: refetch any object by its global id (see resolvers/nodes.py)."""

from __future__ import annotations

from typing import Annotated

import strawberry

from domain.invoices import Invoice as DomainInvoice
from domain.licenses import License as DomainLicense
from domain.partners import Partner as DomainPartner
from domain.payments import PaymentMethod as DomainPaymentMethod
from domain.products import Product as DomainProduct
from resolvers import nodes
from resolvers.nodes import NodeObject
from schema.context import Info
from schema.invoices import Invoice
from schema.licenses import License
from schema.partners import Partner
from schema.payments import PaymentMethod
from schema.products import Product
from schema.relay import Node


def as_node(found: NodeObject | None) -> Node | None:
    """The API type of a domain object found by id."""
    if isinstance(found, DomainPartner):
        return Partner.from_domain(found)
    if isinstance(found, DomainLicense):
        return License.from_domain(found)
    if isinstance(found, DomainInvoice):
        return Invoice.from_domain(found)
    if isinstance(found, DomainPaymentMethod):
        return PaymentMethod.from_domain(found)
    if isinstance(found, DomainProduct):
        return Product.from_domain(found)
    return None


@strawberry.type
class NodeQuery:
    @strawberry.field(
        description="The object with this global id (Partner, License, Invoice, PaymentMethod or Product), "
        "if the caller may read it; null if it is unknown or another partner's. A malformed id is "
        "INVALID_INPUT."
    )
    async def node(
        self,
        info: Info,
        id: Annotated[strawberry.ID, strawberry.argument(description="A global id: any object's `id`.")],
    ) -> Node | None:
        return as_node(await nodes.find_node(info.context, str(id)))

    @strawberry.field(
        description="The objects with these global ids, in the order asked (null where `node` would "
        "answer null); at most 100 ids."
    )
    async def nodes(
        self,
        info: Info,
        ids: Annotated[list[strawberry.ID], strawberry.argument(description="Global ids: objects' `id`s.")],
    ) -> list[Node | None]:
        return [as_node(found) for found in await nodes.find_nodes(info.context, [str(i) for i in ids])]
