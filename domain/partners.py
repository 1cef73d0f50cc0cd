"""Partners: the agencies that hold licenses and are billed for them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
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


# Names the system's tz directory answers that are not zones of the IANA database a partner lives in:
# the host's own zone (`localtime`), the POSIX rules template, `Factory` ("local time zone must be
# set"), and the `posix/` and `right/` (leap-second) copies of the real zones.
_NOT_BILLING_ZONES = frozenset({"localtime", "posixrules", "Factory"})
_NOT_BILLING_PREFIXES = ("posix/", "right/")


@cache
def billing_zones() -> frozenset[str]:
    """The canonical IANA zone names a partner can be billed in (`UTC` included)."""
    return frozenset(
        zone
        for zone in available_timezones()
        if zone not in _NOT_BILLING_ZONES and not zone.startswith(_NOT_BILLING_PREFIXES)
    )


def validate_billing_zone(zone: str) -> str:
    """Return the IANA zone name if it is one; raise UNKNOWN_TIME_ZONE otherwise."""
    unknown = DomainError(
        ErrorCode.UNKNOWN_TIME_ZONE, f"'{zone}' is not an IANA time zone name.", field="billingZone"
    )
    if zone not in billing_zones():
        raise unknown
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise unknown from error
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
