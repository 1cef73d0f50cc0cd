"""Objects by global id: what `node(id:)` and `nodes(ids:)` answer (Relay Object Identification).

The API's ids were globally unique before Relay was asked for: each kind has its own prefix
(`ptr_`, `lic_`, `inv_`, Stripe's `pm_`/`card_`) followed by random characters, so the existing `id`
values are the global ids and no client has to change (see the README, "Relay"). Products, which had
only a slug, get `prd_<slug>`. Clients treat ids as opaque; only this module reads the prefix.

Each lookup applies the read rule of its kind, as the other reads do: a partner sees its own partner,
licenses, invoices and cards; staff see any partner and invoice. Another partner's id answers exactly
like an unknown one: None.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from enum import Enum

from domain.access import Permission
from domain.errors import DomainError, ErrorCode
from domain.invoices import Invoice
from domain.licenses import License
from domain.partners import Partner
from domain.payments import PaymentMethod
from domain.products import Product
from persistence.pagination import MAX_PAGE_SIZE
from resolvers import invoices, partners
from resolvers.context import RequestContext

NodeObject = Partner | License | Invoice | PaymentMethod | Product
MAX_ID_LENGTH = 200
_ID_CHARACTERS = re.compile(r"[A-Za-z0-9_-]+")


class NodeKind(Enum):
    """The kinds of object a global id can name, by the prefixes their ids carry."""

    PARTNER = ("ptr_",)
    LICENSE = ("lic_",)
    INVOICE = ("inv_",)
    PRODUCT = ("prd_",)
    # Stripe's ids: Stripe.js answers pm_…; a card attached the older way keeps its card_… id.
    PAYMENT_METHOD = ("pm_", "card_")


def product_node_id(slug: str) -> str:
    return NodeKind.PRODUCT.value[0] + slug


def node_kind(node_id: str, field: str = "id") -> NodeKind:
    """The kind of object `node_id` names; INVALID_INPUT if it is not an id this API hands out."""
    if len(node_id) <= MAX_ID_LENGTH and _ID_CHARACTERS.fullmatch(node_id):
        for kind in NodeKind:
            prefix = next((p for p in kind.value if node_id.startswith(p)), None)
            if prefix is not None and len(node_id) > len(prefix):
                return kind
    raise DomainError(ErrorCode.INVALID_INPUT, "This is not an id of an object of this API.", field)


async def find_node(ctx: RequestContext, node_id: str) -> NodeObject | None:
    """The object `node_id` names, if the caller may read it; None if it is unknown or not theirs."""
    ctx.require(Permission.NODES_READ)
    kind = node_kind(node_id)
    try:
        return await _FINDERS[kind](ctx, node_id)
    except DomainError as refused:
        if refused.code is ErrorCode.NOT_FOUND:
            return None
        raise


async def find_nodes(ctx: RequestContext, node_ids: Sequence[str]) -> list[NodeObject | None]:
    """Each id's object, in the order asked (None where `find_node` finds none); at most 100 ids."""
    ctx.require(Permission.NODES_READ)
    if len(node_ids) > MAX_PAGE_SIZE:
        raise DomainError(ErrorCode.INVALID_INPUT, f"At most {MAX_PAGE_SIZE} ids at once.", "ids")
    for index, node_id in enumerate(node_ids):
        node_kind(node_id, f"ids[{index}]")
    return [await find_node(ctx, node_id) for node_id in node_ids]


async def _partner(ctx: RequestContext, partner_id: str) -> Partner:
    return await partners.partner(ctx, partner_id=partner_id)


async def _invoice(ctx: RequestContext, invoice_id: str) -> Invoice:
    return await invoices.get_invoice(ctx, invoice_id=invoice_id)


async def _license(ctx: RequestContext, license_id: str) -> License | None:
    """One of the partner's holdings by id (`license(key:)` finds the live holding by key)."""
    partner_id = ctx.partner_id()
    async with ctx.reader() as uow:
        holding = await uow.licenses.get(license_id)
    return holding if holding is not None and holding.partner_id == partner_id else None


async def _payment_method(ctx: RequestContext, stripe_id: str) -> PaymentMethod | None:
    """One of the partner's cards (removed ones too: `removedAt` says so), as `viewer.paymentMethods`."""
    partner_id = ctx.partner_id()
    async with ctx.reader() as uow:
        method = await uow.payment_methods.by_stripe_id(stripe_id)
    return method if method is not None and method.partner_id == partner_id else None


async def _product(ctx: RequestContext, product_id: str) -> Product | None:
    ctx.require(Permission.RECORDS_READ)
    async with ctx.reader() as uow:
        return await uow.products.get(product_id.removeprefix(NodeKind.PRODUCT.value[0]))


_FINDERS: dict[NodeKind, Callable[[RequestContext, str], Awaitable[NodeObject | None]]] = {
    NodeKind.PARTNER: _partner,
    NodeKind.LICENSE: _license,
    NodeKind.INVOICE: _invoice,
    NodeKind.PAYMENT_METHOD: _payment_method,
    NodeKind.PRODUCT: _product,
}
