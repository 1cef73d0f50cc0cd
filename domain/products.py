"""Products in the catalog, priced per license per day."""

from __future__ import annotations

from dataclasses import dataclass

MICROS_PER_UNIT = 1_000_000


@dataclass(frozen=True)
class Product:
    """A licensable product. `daily_price_micros` is millionths of the currency's major unit per day."""

    slug: str
    name: str
    description: str
    daily_price_micros: int
    currency: str
