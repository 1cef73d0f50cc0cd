"""Products in the catalog, and their dated daily prices per currency.

A product has any number of prices: one row per (currency, effective-from local date). A license-day is
priced by the row in force on that day in the partner's zone (the lookup is in domain/billing.py). A
retired product cannot be issued any more; the licenses already held keep billing at its prices.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from domain.errors import DomainError, ErrorCode
from domain.partners import validate_currency

MICROS_PER_UNIT = 1_000_000
# A million major units per license per day: anything above is a typo (an extra zero or three), not a price.
MAX_DAILY_PRICE_MICROS = 1_000_000 * MICROS_PER_UNIT
# Prices migrated from the single-price catalog apply from this day, before any billed month.
EARLIEST_PRICE_DATE = date(2000, 1, 1)
# Slugs prefix license keys (`<slug>_<random>`), so no underscore.
_SLUG_PATTERN = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")
MAX_PRODUCT_NAME_LENGTH = 200
MAX_PRODUCT_DESCRIPTION_LENGTH = 1000


@dataclass(frozen=True, order=True)
class ProductPrice:
    """A daily price in micro-units of `currency`'s major unit, in force from a local date on."""

    product_slug: str
    currency: str
    effective_from: date
    daily_price_micros: int


@dataclass(frozen=True)
class Product:
    """A licensable product; `prices` in (currency, effective_from) order."""

    slug: str
    name: str
    description: str
    prices: tuple[ProductPrice, ...] = ()
    retired_at: datetime | None = None

    @property
    def is_retired(self) -> bool:
        return self.retired_at is not None

    def require_issuable(self, field: str) -> None:
        """A retired product sells no new licenses."""
        if self.is_retired:
            raise DomainError(
                ErrorCode.PRODUCT_RETIRED, f"'{self.slug}' is retired: no new licenses are issued.", field
            )


def validate_slug(slug: str) -> str:
    cleaned = slug.strip()
    if not _SLUG_PATTERN.fullmatch(cleaned):
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"'{slug}' is not a product slug: 1-64 lower-case letters, digits and inner hyphens.",
            field="slug",
        )
    return cleaned


def new_product(slug: str, name: str, description: str) -> Product:
    """A catalog entry with a valid slug, a name and an optional description (no prices yet)."""
    cleaned_name = " ".join(name.split())
    if not cleaned_name or len(cleaned_name) > MAX_PRODUCT_NAME_LENGTH:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"A product needs a name of 1-{MAX_PRODUCT_NAME_LENGTH} characters.",
            field="name",
        )
    if len(description) > MAX_PRODUCT_DESCRIPTION_LENGTH:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"A description has at most {MAX_PRODUCT_DESCRIPTION_LENGTH} characters.",
            field="description",
        )
    return Product(validate_slug(slug), cleaned_name, description.strip())


def new_price(
    product_slug: str, currency: str, daily_price_micros: int, effective_from: date
) -> ProductPrice:
    """A validated price row: a supported currency and 0 < price <= MAX_DAILY_PRICE_MICROS."""
    if not 0 < daily_price_micros <= MAX_DAILY_PRICE_MICROS:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"A daily price is more than 0 and at most {MAX_DAILY_PRICE_MICROS} micro-units "
            f"({MAX_DAILY_PRICE_MICROS // MICROS_PER_UNIT} per day); got {daily_price_micros}.",
            field="dailyPriceMicros",
        )
    if effective_from < EARLIEST_PRICE_DATE:
        raise DomainError(
            ErrorCode.INVALID_INPUT,
            f"Prices start on {EARLIEST_PRICE_DATE.isoformat()} at the earliest.",
            field="effectiveFrom",
        )
    return ProductPrice(product_slug, validate_currency(currency), effective_from, daily_price_micros)


@dataclass(frozen=True)
class CatalogEntry:
    """One product of a catalog file, with the prices to set on it."""

    product: Product
    prices: tuple[ProductPrice, ...]


def catalog_from_document(document: Mapping[str, Any]) -> list[CatalogEntry]:
    """Validate a parsed catalog file (TOML or JSON):

        [[products]]   slug, name, description (optional)
        [[products.prices]]   currency, daily_price_micros (an integer), effective_from (a date)

    A bad entry is INVALID_INPUT (or UNSUPPORTED_CURRENCY) naming where it is, e.g. products[2].prices[0].
    """
    entries = []
    for index, item in enumerate(_list_of(document, "products", "products")):
        where = f"products[{index}]"
        try:
            product = new_product(
                _text(item, "slug", where), _text(item, "name", where), str(item.get("description", ""))
            )
        except DomainError as error:
            raise _located(error, where) from error
        prices = tuple(
            _price_of(product.slug, price, f"{where}.prices[{number}]")
            for number, price in enumerate(_list_of(item, "prices", f"{where}.prices"))
        )
        entries.append(CatalogEntry(product, prices))
    slugs = [entry.product.slug for entry in entries]
    if len(set(slugs)) != len(slugs):
        raise DomainError(ErrorCode.INVALID_INPUT, "A catalog lists each product slug once.", "products")
    return entries


def _price_of(slug: str, item: Mapping[str, Any], where: str) -> ProductPrice:
    micros = item.get("daily_price_micros")
    if not isinstance(micros, int) or isinstance(micros, bool):
        raise DomainError(ErrorCode.INVALID_INPUT, f"{where}: daily_price_micros is an integer.", where)
    effective = item.get("effective_from", EARLIEST_PRICE_DATE)
    try:
        effective_from = effective if isinstance(effective, date) else date.fromisoformat(str(effective))
    except ValueError as error:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"{where}: effective_from is a date, YYYY-MM-DD.", where
        ) from error
    try:
        return new_price(slug, _text(item, "currency", where), micros, effective_from)
    except DomainError as error:
        raise _located(error, where) from error


def _located(error: DomainError, where: str) -> DomainError:
    """The error, naming where in the catalog file it is (`_text` errors already do)."""
    if error.field is not None and error.field.startswith(where):
        return error
    return DomainError(error.code, f"{where}: {error.message}", f"{where}.{error.field}")


def _list_of(document: Mapping[str, Any], name: str, where: str) -> list[Mapping[str, Any]]:
    items = document.get(name, [])
    if not isinstance(items, list) or not all(isinstance(item, Mapping) for item in items):
        raise DomainError(ErrorCode.INVALID_INPUT, f"{where} is a list of tables.", where)
    return items


def _text(item: Mapping[str, Any], name: str, where: str) -> str:
    value = item.get(name)
    if not isinstance(value, str):
        raise DomainError(ErrorCode.INVALID_INPUT, f"{where}: {name} is required text.", f"{where}.{name}")
    return value
