"""`validateLicense`: what a product plugin on a client's site asks, with only the license key."""

from __future__ import annotations

from typing import Annotated

import strawberry

from domain.license_checks import CheckReason, LicenseCheck
from domain.licenses import LicenseState
from resolvers import license_checks
from schema.context import Info
from schema.enums import described_enum

described_enum(
    CheckReason,
    name="LicenseCheckReason",
    values={
        CheckReason.NOT_FOUND: "No license has this key.",
        CheckReason.REVOKED: "The license was revoked, or this holding was transferred away.",
        CheckReason.NOT_ASSIGNED: "The license is on no site.",
        CheckReason.WRONG_SITE: "The license is assigned to another site.",
        CheckReason.RATE_LIMITED: "Too many checks; retry after `retryAfterSeconds`.",
    },
    description="Why a key is not valid on the site: NOT_FOUND, REVOKED (or transferred away), "
    "NOT_ASSIGNED (on no site), WRONG_SITE, or RATE_LIMITED (see retryAfterSeconds).",
)


@strawberry.type(description="The answer to validateLicense; it never names the partner or another site.")
class LicenseValidity:
    valid: bool = strawberry.field(description="Whether the key is valid on the site asked about.")
    state: LicenseState | None = strawberry.field(description="The license's state (null: unknown key).")
    product_slug: str | None = strawberry.field(description="The licensed product (null: unknown key).")
    reason: CheckReason | None = strawberry.field(description="Why it is not valid (null when valid).")
    retry_after_seconds: int | None = strawberry.field(
        description="RATE_LIMITED only: ask again after this many seconds."
    )

    @classmethod
    def of(cls, check: LicenseCheck) -> LicenseValidity:
        return cls(
            valid=check.valid,
            state=None if check.state is None else LicenseState(check.state),
            product_slug=check.product_slug,
            reason=check.reason,
            retry_after_seconds=check.retry_after_seconds,
        )


@strawberry.type
class LicenseCheckQuery:
    @strawberry.field(
        description="Whether a license key is valid on a site (needs no token; rate-limited per client "
        "address and overall). A site URL that does not normalize is refused with INVALID_SITE."
    )
    async def validate_license(
        self,
        info: Info,
        key: Annotated[str, strawberry.argument(description="The license key the plugin was given.")],
        site: Annotated[str, strawberry.argument(description="The URL of the site the plugin runs on.")],
    ) -> LicenseValidity:
        return LicenseValidity.of(await license_checks.validate_license(info.context, key=key, site=site))
