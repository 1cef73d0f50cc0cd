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


class StatusChange(StrEnum):
    """Why a site watching a key is told something new (licenseStatus)."""

    ASSIGNED = "ASSIGNED"  # put on a site
    MOVED = "MOVED"  # re-assigned from one site to another
    UNASSIGNED = "UNASSIGNED"  # taken off its site
    REVOKED = "REVOKED"  # revoked: final
    TRANSFERRED = "TRANSFERRED"  # now held by another partner (which one is never said)


@dataclass(frozen=True)
class LicenseStatus:
    """One message of licenseStatus: the answer validateLicense would give now, and why it is sent
    (None for the first message, the status when subscribing)."""

    check: LicenseCheck
    change: StatusChange | None = None


def status_update(
    before: License, after: License | None, key: str, site: str, told: LicenseCheck
) -> LicenseStatus | None:
    """What a site watching `key` on `site` is told when the key's holding went from `before` to `after`
    (`told`: its last answer). Only a change of its own answer is told, and a transfer while the key is
    valid on its site: moves between other sites tell it nothing about them."""
    check = check_license(after, key, site)
    change = _why(before, after)
    if check != told or (change is StatusChange.TRANSFERRED and check.valid):
        return LicenseStatus(check, change)
    return None


def is_final(check: LicenseCheck) -> bool:
    """Nothing more can change for this answer: an unknown key, or one revoked (or gone with no holder)."""
    return check.reason in (CheckReason.NOT_FOUND, CheckReason.REVOKED, CheckReason.RATE_LIMITED)


def _why(before: License, after: License | None) -> StatusChange | None:
    if after is None or not after.is_live:
        return StatusChange.REVOKED
    if after.id != before.id:
        return StatusChange.TRANSFERRED
    if before.site is None and after.site is not None:
        return StatusChange.ASSIGNED
    if before.site is not None and after.site is None:
        return StatusChange.UNASSIGNED
    if before.site != after.site:
        return StatusChange.MOVED
    return None
