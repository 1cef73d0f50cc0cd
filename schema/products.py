"""The catalog in the API: `products`, and staff's createProduct, setProductPrice and retireProduct."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import date, datetime
from typing import Annotated

import strawberry

from domain.billing import PriceBook
from domain.money import format_micros
from domain.products import Product as DomainProduct
from domain.products import ProductPrice as DomainProductPrice
from resolvers import products
from resolvers.nodes import product_node_id
from resolvers.products import CatalogView, catalog_views
from schema.context import Info, request_loader
from schema.errors import IDEMPOTENCY_KEY_DESCRIPTION, MUTATION_INPUT, UserError, attempt
from schema.relay import Node

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

    @strawberry.field(description="Every dated price, by currency then effective date.")
    def prices(self) -> list[ProductPrice]:
        return [ProductPrice.from_domain(price) for price in self.domain.prices]

    @strawberry.field(description=f"Price per license per day in micro-units: {CURRENT_PRICE}; 0 if none.")
    async def daily_price_micros(self, info: Info) -> int:
        return await _current_micros(info, self.domain) or 0

    @strawberry.field(description=f"ISO 4217 code (lower case) of `dailyPriceMicros`: {CURRENT_PRICE}.")
    async def currency(self, info: Info) -> str:
        return (await _view(info)).currency

    @strawberry.field(description="`dailyPriceMicros` as exact decimal text, e.g. '0.328767'.")
    async def daily_price(self, info: Info) -> str:
        return format_micros(await _current_micros(info, self.domain) or 0)

    @strawberry.field(
        description="Whether the caller can issue it today: not retired, and priced in its currency."
    )
    async def available(self, info: Info) -> bool:
        return not self.domain.is_retired and await _current_micros(info, self.domain) is not None

    @classmethod
    def from_domain(cls, product: DomainProduct) -> Product:
        return cls(
            id=strawberry.ID(product_node_id(product.slug)),
            slug=product.slug,
            name=product.name,
            description=product.description,
            retired_at=product.retired_at,
            domain=product,
        )


async def _view(info: Info) -> CatalogView:
    view: CatalogView = await request_loader(info, "catalog_view", catalog_views).load("caller")
    return view


async def _current_micros(info: Info, product: DomainProduct) -> int | None:
    view = await _view(info)
    return PriceBook(view.currency, product.prices).price_on(product.slug, view.today)


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
