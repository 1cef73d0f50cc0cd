"""Partners: the agencies that hold licenses and are billed for them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from domain.errors import DomainError, ErrorCode

# ISO 4217 currencies we can bill in, with their minor-unit exponent. Amounts are integers in minor units.
SUPPORTED_CURRENCIES: dict[str, int] = {"usd": 2, "eur": 2, "gbp": 2, "cad": 2, "aud": 2, "jpy": 0}

MAX_NAME_LENGTH = 200


@dataclass(frozen=True)
class Partner:
    id: str
    name: str
    billing_zone: str
    currency: str
    created_at: datetime


def validate_billing_zone(zone: str) -> str:
    """Return the IANA zone name if it is one; raise UNKNOWN_TIME_ZONE otherwise."""
    if zone not in available_timezones():
        raise DomainError(
            ErrorCode.UNKNOWN_TIME_ZONE, f"'{zone}' is not an IANA time zone name.", field="billingZone"
        )
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise DomainError(
            ErrorCode.UNKNOWN_TIME_ZONE, f"'{zone}' is not an IANA time zone name.", field="billingZone"
        ) from error
    return zone


def validate_currency(currency: str) -> str:
    """Return the lower-case currency code if we bill in it; raise UNSUPPORTED_CURRENCY otherwise."""
    code = currency.strip().lower()
    if code not in SUPPORTED_CURRENCIES:
        supported = ", ".join(sorted(SUPPORTED_CURRENCIES))
        raise DomainError(
            ErrorCode.UNSUPPORTED_CURRENCY,
            f"'{currency}' is not a supported currency (supported: {supported}).",
            field="currency",
        )
    return code


def validate_partner_name(name: str) -> str:
    cleaned = " ".join(name.split())
    if not cleaned:
        raise DomainError(ErrorCode.INVALID_INPUT, "A partner needs a name.", field="name")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise DomainError(
            ErrorCode.INVALID_INPUT, f"A partner name has at most {MAX_NAME_LENGTH} characters.", field="name"
        )
    return cleaned
