"""The catalog in the API: `products`, and staff's createProduct, setProductPrice and retireProduct."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, TypeVar

import strawberry

from domain.billing import PriceBook
from domain.money import format_micros
from domain.products import Product as DomainProduct
from domain.products import ProductPrice as DomainProductPrice
from resolvers import products
from resolvers.nodes import product_node_id
from resolvers.products import CatalogView, catalog_views, products_by_slug
from schema.context import Info, request_loader
from schema.errors import IDEMPOTENCY_KEY_DESCRIPTION, MUTATION_INPUT, UserError, attempt
from schema.ready_fields import NOT_READY, ReadyField
from schema.relay import Node

T = TypeVar("T")
CURRENT_PRICE = (
    "the price in force today (in the caller's zone) in the caller's billing currency (staff: USD)"
)


@strawberry.type(description="A daily price of a product in one currency, in force from a local date on.")
class ProductPrice:
    currency: str = strawberry.field(description="ISO 4217 currency code (lower case).")
    daily_price_micros: int = strawberry.field(
        description="Price per license per day in millionths of the currency unit (328767 = 0.328767)."
    )
    effective_from: date = strawberry.field(
        description="First calendar day (in the partner's billing zone) billed at this price; it applies "
        "until the next price of the same currency."
    )

    @strawberry.field(description="The daily price as exact decimal text, e.g. '0.328767'.")
    def daily_price(self) -> str:
        return format_micros(self.daily_price_micros)

    @classmethod
    def from_domain(cls, price: DomainProductPrice) -> ProductPrice:
        return cls(
            currency=price.currency,
            daily_price_micros=price.daily_price_micros,
            effective_from=price.effective_from,
        )


@strawberry.type(description="A licensable product, priced per license per day in each currency.")
class Product(Node):
    id: strawberry.ID = strawberry.field(
        description="Global id (`node(id:)`), derived from the slug; mutations take the slug."
    )
    slug: str = strawberry.field(description="Stable identifier, also the prefix of its license keys.")
    name: str = strawberry.field(description="Display name.")
    description: str = strawberry.field(description="What the product does.")
    retired_at: datetime | None = strawberry.field(
        description="When staff retired it: no new licenses; licenses held keep billing."
    )
    domain: strawberry.Private[DomainProduct]
    # Today's price in the caller's view, when whoever made this Product had read the view already (a
    # page of licenses: see `page_products`). Then the price fields answer at once.
    today: strawberry.Private[PriceToday | None] = None

    @strawberry.field(description="Every dated price, by currency then effective date.")
    def prices(self) -> list[ProductPrice]:
        return [ProductPrice.from_domain(price) for price in self.domain.prices]

    @strawberry.field(
        description=f"Price per license per day in micro-units: {CURRENT_PRICE}; 0 if none.", graphql_type=int
    )
    def daily_price_micros(self, info: Info) -> int | Awaitable[int]:
        return self.today.micros if self.today else self._later(info, lambda today: today.micros)

    @strawberry.field(
        description=f"ISO 4217 code (lower case) of `dailyPriceMicros`: {CURRENT_PRICE}.", graphql_type=str
    )
    def currency(self, info: Info) -> str | Awaitable[str]:
        return self.today.currency if self.today else self._later(info, lambda today: today.currency)

    @strawberry.field(
        description="`dailyPriceMicros` as exact decimal text, e.g. '0.328767'.", graphql_type=str
    )
    def daily_price(self, info: Info) -> str | Awaitable[str]:
        return self.today.text if self.today else self._later(info, lambda today: today.text)

    @strawberry.field(
        description="Whether the caller can issue it today: not retired, and priced in its currency.",
        graphql_type=bool,
    )
    def available(self, info: Info) -> bool | Awaitable[bool]:
        return self.today.available if self.today else self._later(info, lambda today: today.available)

    async def _later(self, info: Info, answer: Callable[[PriceToday], T]) -> T:
        """`answer` once the caller's view is read (one batched read per request)."""
        return answer(PriceToday.of(self.domain, await _view(info)))

    @classmethod
    def from_domain(cls, product: DomainProduct, view: CatalogView | None = None) -> Product:
        return cls(
            id=strawberry.ID(product_node_id(product.slug)),
            slug=product.slug,
            name=product.name,
            description=product.description,
            retired_at=product.retired_at,
            domain=product,
            today=None if view is None else PriceToday.of(product, view),
        )


@dataclass(frozen=True)
class PriceToday:
    """A product's price in force today in the caller's view, as the price fields show it."""

    micros: int
    currency: str
    text: str
    available: bool

    @classmethod
    def of(cls, product: DomainProduct, view: CatalogView) -> PriceToday:
        micros = PriceBook(view.currency, product.prices).price_on(product.slug, view.today)
        return cls(
            micros=micros or 0,
            currency=view.currency,
            text=format_micros(micros or 0),
            available=not product.is_retired and micros is not None,
        )


async def _view(info: Info) -> CatalogView:
    view: CatalogView = await request_loader(info, "catalog_view", catalog_views).load("caller")
    return view


PRICE_FIELDS = frozenset({"dailyPriceMicros", "currency", "dailyPrice", "available"})
# A product priced for the caller (`today` set) answers its price fields without a resolver call.
PRODUCT_READY_FIELDS = [
    ReadyField("Product", "dailyPriceMicros", lambda p: p.today.micros if p.today else NOT_READY),
    ReadyField("Product", "currency", lambda p: p.today.currency if p.today else NOT_READY),
    ReadyField("Product", "dailyPrice", lambda p: p.today.text if p.today else NOT_READY),
    ReadyField("Product", "available", lambda p: p.today.available if p.today else NOT_READY),
]


async def page_products(info: Info, slugs: Iterable[str], *, priced: bool) -> dict[str, Product]:
    """The products of a page of items, read once for the whole page (one statement, plus the caller's
    view when `priced`), so each item's product and its price fields answer without awaiting."""
    found = await request_loader(info, "products", products_by_slug).load_many(sorted(set(slugs)))
    view = await _view(info) if priced else None
    return {product.slug: Product.from_domain(product, view) for product in found if product is not None}


@strawberry.input(description="A new product (it can be issued once it has a price in a currency).")
class CreateProductInput:
    slug: str = strawberry.field(description="Lower-case letters, digits and inner hyphens; prefixes keys.")
    name: str = strawberry.field(description="Display name.")
    description: str = strawberry.field(default="", description="What the product does.")
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_KEY_DESCRIPTION)


@strawberry.input(description="A product's daily price in a currency from a local date on.")
class SetProductPriceInput:
    product_slug: str = strawberry.field(description="The product.")
    currency: str = strawberry.field(description="ISO 4217 code: usd, eur, gbp, cad, aud or jpy.")
    daily_price_micros: int = strawberry.field(
        description="Price per license per day in millionths of the currency unit; more than 0."
    )
    effective_from: date = strawberry.field(
        description="First calendar day billed at this price, in each partner's zone; not in a month "
        "already invoiced (MONTH_CLOSED)."
    )
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_KEY_DESCRIPTION)


@strawberry.input(description="Stop issuing a product.")
class RetireProductInput:
    slug: str = strawberry.field(description="The product.")
    idempotency_key: str | None = strawberry.field(default=None, description=IDEMPOTENCY_KEY_DESCRIPTION)


@strawberry.type(description="The result of a catalog change.")
class ProductPayload:
    product: Product | None = strawberry.field(
        description="The product as it is now, unless there were errors."
    )
    errors: list[UserError] = strawberry.field(description="Why nothing changed, if it did not.")


@strawberry.type
class ProductQuery:
    @strawberry.field(description="The catalog, by name (retired products included: see `retiredAt`).")
    async def products(self, info: Info) -> list[Product]:
        return [Product.from_domain(p) for p in await products.list_products(info.context)]


@strawberry.type
class ProductMutation:
    @strawberry.mutation(description="Staff: add a product to the catalog.")
    async def create_product(
        self, info: Info, input: Annotated[CreateProductInput, MUTATION_INPUT]
    ) -> ProductPayload:
        return await _payload(
            products.create_product(
                info.context,
                slug=input.slug,
                name=input.name,
                description=input.description,
                idempotency_key=input.idempotency_key,
            )
        )

    @strawberry.mutation(
        description="Staff: set a product's daily price in a currency from a date on; earlier days keep "
        "their price."
    )
    async def set_product_price(
        self, info: Info, input: Annotated[SetProductPriceInput, MUTATION_INPUT]
    ) -> ProductPayload:
        return await _payload(
            products.set_product_price(
                info.context,
                product_slug=input.product_slug,
                currency=input.currency,
                daily_price_micros=input.daily_price_micros,
                effective_from=input.effective_from,
                idempotency_key=input.idempotency_key,
            )
        )

    @strawberry.mutation(
        description="Staff: retire a product: no new licenses; licenses held keep working and billing."
    )
    async def retire_product(
        self, info: Info, input: Annotated[RetireProductInput, MUTATION_INPUT]
    ) -> ProductPayload:
        return await _payload(
            products.retire_product(info.context, slug=input.slug, idempotency_key=input.idempotency_key)
        )


async def _payload(call: Awaitable[DomainProduct]) -> ProductPayload:
    product, errors = await attempt(call)
    return ProductPayload(product=None if product is None else Product.from_domain(product), errors=errors)
