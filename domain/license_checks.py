"""License checks for sites: a product plugin holding only a license key asks whether it is valid on
its site. The answer says as little as it can: never the partner, never another site."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import StrEnum

from domain.licenses import License, LicenseState


class CheckReason(StrEnum):
    NOT_FOUND = "NOT_FOUND"
    REVOKED = "REVOKED"
    NOT_ASSIGNED = "NOT_ASSIGNED"
    WRONG_SITE = "WRONG_SITE"
    RATE_LIMITED = "RATE_LIMITED"


@dataclass(frozen=True)
class LicenseCheck:
    valid: bool
    state: str | None = None
    product_slug: str | None = None
    reason: CheckReason | None = None
    retry_after_seconds: int | None = None


def check_license(holding: License | None, key: str, site: str) -> LicenseCheck:
    """Judge `key` on the normalized `site`, given whoever holds the key now (None: nobody ever did)."""
    # The stored key is compared in constant time, so the answer's timing does not grade a guess.
    if holding is None or not hmac.compare_digest(holding.key.encode(), key.encode()):
        return LicenseCheck(valid=False, reason=CheckReason.NOT_FOUND)
    found = LicenseCheck(valid=False, state=holding.state, product_slug=holding.product_slug)
    if holding.state not in (LicenseState.ISSUED, LicenseState.ASSIGNED):
        return _with(found, CheckReason.REVOKED)
    if holding.site is None:
        return _with(found, CheckReason.NOT_ASSIGNED)
    if not hmac.compare_digest(holding.site.encode(), site.encode()):
        return _with(found, CheckReason.WRONG_SITE)
    return LicenseCheck(valid=True, state=holding.state, product_slug=holding.product_slug)


def rate_limited(retry_after_seconds: int) -> LicenseCheck:
    return LicenseCheck(valid=False, reason=CheckReason.RATE_LIMITED, retry_after_seconds=retry_after_seconds)


def _with(check: LicenseCheck, reason: CheckReason) -> LicenseCheck:
    return LicenseCheck(valid=False, state=check.state, product_slug=check.product_slug, reason=reason)
