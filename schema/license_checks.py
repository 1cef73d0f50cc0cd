"""`validateLicense` and `licenseStatus`: what a product plugin on a client's site asks, with only the
license key."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator
from typing import Annotated

import strawberry

from domain.license_checks import CheckReason, LicenseCheck, StatusChange
from domain.license_checks import LicenseStatus as DomainStatus
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


described_enum(
    StatusChange,
    name="LicenseStatusChange",
    description="Why licenseStatus sent a message.",
    values={
        StatusChange.ASSIGNED: "The license was put on a site.",
        StatusChange.MOVED: "The license was re-assigned from one site to another.",
        StatusChange.UNASSIGNED: "The license was taken off its site.",
        StatusChange.REVOKED: "The license was revoked: final, the subscription ends.",
        StatusChange.TRANSFERRED: "The license is now held by another partner (which one is never said).",
    },
)


@strawberry.type(
    description="A message of licenseStatus: validateLicense's answer for the key on the site, and why it "
    "was sent. It never names the partner or another site."
)
class LicenseStatus:
    valid: bool = strawberry.field(description="Whether the key is valid on the site asked about.")
    state: LicenseState | None = strawberry.field(description="The license's state (null: unknown key).")
    product_slug: str | None = strawberry.field(description="The licensed product (null: unknown key).")
    reason: CheckReason | None = strawberry.field(description="Why it is not valid (null when valid).")
    retry_after_seconds: int | None = strawberry.field(
        description="RATE_LIMITED only: subscribe again after this many seconds."
    )
    change: StatusChange | None = strawberry.field(
        description="What changed for this site; null on the first message (the status when subscribing)."
    )

    @classmethod
    def of(cls, status: DomainStatus) -> LicenseStatus:
        answer = LicenseValidity.of(status.check)
        return cls(
            valid=answer.valid,
            state=answer.state,
            product_slug=answer.product_slug,
            reason=answer.reason,
            retry_after_seconds=answer.retry_after_seconds,
            change=status.change,
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


@strawberry.type
class LicenseCheckSubscription:
    @strawberry.subscription(
        description="A key's status on a site, live, authenticated by the key itself (no token: the socket's "
        "connection_params may be empty). First the status now (as validateLicense answers it), then a "
        "message each time it changes for this site: revoked, moved, unassigned, assigned, or transferred "
        "while valid here. Ends after a final answer (NOT_FOUND, REVOKED, RATE_LIMITED). Counted with "
        "validateLicense per client address and overall. A site URL that does not normalize is refused "
        "with INVALID_SITE."
    )
    async def license_status(
        self,
        info: Info,
        key: Annotated[str, strawberry.argument(description="The license key the site holds.")],
        site: Annotated[
            str, strawberry.argument(description="The site's URL (normalized like assignLicense).")
        ],
    ) -> AsyncGenerator[LicenseStatus, None]:
        statuses = await license_checks.license_status(info.context, key=key, site=site)

        async def mapped() -> AsyncGenerator[LicenseStatus, None]:
            async with contextlib.aclosing(statuses):
                async for status in statuses:
                    yield LicenseStatus.of(status)

        return mapped()
