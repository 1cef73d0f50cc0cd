"""The catalog in the API."""

from __future__ import annotations

import strawberry

from domain.money import format_micros
from domain.products import Product as DomainProduct
from resolvers import products
from schema.context import Info


@strawberry.type(description="A licensable product, priced per license per day.")
class Product:
    slug: str = strawberry.field(description="Stable identifier, also the prefix of its license keys.")
    name: str = strawberry.field(description="Display name.")
    description: str = strawberry.field(description="What the product does.")
    daily_price_micros: int = strawberry.field(
        description="Price per license per day in millionths of the currency unit (328767 = 0.328767)."
    )
    currency: str = strawberry.field(description="ISO 4217 currency code (lower case).")

    @strawberry.field(description="The daily price as exact decimal text, e.g. '0.328767'.")
    def daily_price(self) -> str:
        return format_micros(self.daily_price_micros)

    @classmethod
    def from_domain(cls, product: DomainProduct) -> Product:
        return cls(
            slug=product.slug,
            name=product.name,
            description=product.description,
            daily_price_micros=product.daily_price_micros,
            currency=product.currency,
        )


@strawberry.type
class ProductQuery:
    @strawberry.field(description="The catalog, by name.")
    async def products(self, info: Info) -> list[Product]:
        return [Product.from_domain(p) for p in await products.list_products(info.context)]
