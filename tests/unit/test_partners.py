from __future__ import annotations

import pytest

from domain.errors import DomainError, ErrorCode
from domain.partners import validate_billing_zone, validate_currency, validate_partner_name


@pytest.mark.parametrize("zone", ["Australia/Lord_Howe", "UTC", "Etc/UTC", "America/Argentina/Buenos_Aires"])
def test_iana_zones_are_accepted(zone: str) -> None:
    assert validate_billing_zone(zone) == zone


@pytest.mark.parametrize(
    "zone",
    [
        "Mars/Olympus",
        "",
        "../etc/passwd",
        "utc+2",
        "localtime",
        "posixrules",
        "Factory",
        "posix/Europe/Paris",
        "right/UTC",
        "/usr/share/zoneinfo/UTC",
    ],
)
def test_unknown_zones_are_refused(zone: str) -> None:
    with pytest.raises(DomainError) as refused:
        validate_billing_zone(zone)
    assert refused.value.code is ErrorCode.UNKNOWN_TIME_ZONE


def test_currency_codes_are_normalized_to_lower_case() -> None:
    assert validate_currency(" EUR ") == "eur"


def test_unsupported_currency_names_the_supported_ones() -> None:
    with pytest.raises(DomainError) as refused:
        validate_currency("xyz")
    assert refused.value.code is ErrorCode.UNSUPPORTED_CURRENCY
    assert "usd" in refused.value.message


def test_partner_names_fold_white_space() -> None:
    assert validate_partner_name("  Acme \n Agency ") == "Acme Agency"
