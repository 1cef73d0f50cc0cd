"""validateLicense and licenseStatus: no token, only the key and the site; rate-limited per client
address and overall (one budget for both)."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncGenerator

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from domain.license_checks import (
    LicenseCheck,
    LicenseStatus,
    check_license,
    is_final,
    rate_limited,
    status_update,
)
from domain.licenses import License
from domain.sites import normalize_site
from persistence.database import Database
from persistence.events import RecordedEvent
from persistence.unit_of_work import UnitOfWork
from resolvers.context import RequestContext
from resolvers.feed import follow_events, latest_seq

# Longer than any key we issue: a longer one cannot match, so it is not looked up at all.
MAX_KEY_LENGTH = 128


class CheckLimits:
    """Moving-window limits on license checks (the `limits` library, in this worker's memory)."""

    NAMESPACE = "validateLicense"

    def __init__(self, per_address: str, overall: str) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._per_address: RateLimitItem = parse(per_address)
        self._overall: RateLimitItem = parse(overall)

    async def retry_after(self, address: str) -> int | None:
        """None if this check may run now; otherwise whole seconds until it may (at least 1)."""
        for item, scope in ((self._per_address, f"address:{address}"), (self._overall, "overall")):
            if not await self._limiter.hit(item, self.NAMESPACE, scope):
                window = await self._limiter.get_window_stats(item, self.NAMESPACE, scope)
                return max(1, math.ceil(window.reset_time - time.time()))
        return None


async def validate_license(ctx: RequestContext, *, key: str, site: str) -> LicenseCheck:
    """Whether `key` is valid on `site`; a site URL that does not normalize is INVALID_SITE."""
    wait = await _retry_after(ctx)
    if wait is not None:
        return rate_limited(wait)
    normalized = normalize_site(site)
    return check_license(await _holding(ctx.database, key), key, normalized)


async def license_status(
    ctx: RequestContext, *, key: str, site: str, poll_seconds: float | None = None
) -> AsyncGenerator[LicenseStatus, None]:
    """The key's status on `site` now, then each time it changes for that site (revoked, moved,
    unassigned, transferred), until it can change no more. Counted like a validateLicense: over the
    limit, the only message is RATE_LIMITED. A site URL that does not normalize is INVALID_SITE,
    refused before streaming."""
    wait = await _retry_after(ctx)
    if wait is not None:
        return _once(LicenseStatus(rate_limited(wait)))
    return _watch(ctx.database, key, normalize_site(site), poll_seconds)


async def _watch(
    database: Database, key: str, site: str, poll_seconds: float | None
) -> AsyncGenerator[LicenseStatus, None]:
    """Follow the feed of whichever partner holds the key (the partner is never told): its events about
    the key wake this watcher, which re-reads the key and tells the site what changed for it."""
    holding = await _holding(database, key)
    told = check_license(holding, key, site)
    yield LicenseStatus(told)
    while holding is not None and not is_final(told):
        partner_id = holding.partner_id
        # The cursor first, then the key: whatever commits after the read is in the feed from here.
        after_seq = await latest_seq(database, partner_id)
        current = await _holding(database, key)

        def about_key(event: RecordedEvent) -> bool:
            return event.stream == "license" and event.subject == key

        feed = follow_events(
            database, partner_id, after_seq=after_seq, wanted=about_key, poll_seconds=poll_seconds
        )
        async with contextlib.aclosing(feed):
            while True:
                update = status_update(holding, current, key, site, told)
                if update is not None:
                    told = update.check
                    yield update
                holding = current
                if holding is None or is_final(told) or holding.partner_id != partner_id:
                    break  # done, or the key changed hands: follow its new holder's feed
                await anext(feed)
                current = await _holding(database, key)


async def _once(status: LicenseStatus) -> AsyncGenerator[LicenseStatus, None]:
    yield status


async def _retry_after(ctx: RequestContext) -> int | None:
    if ctx.license_checks is None:
        return None
    return await ctx.license_checks.retry_after(ctx.client_address or "unknown")


async def _holding(database: Database, key: str) -> License | None:
    """Whoever holds `key` now; a key longer than any we issue is not looked up at all."""
    if len(key) > MAX_KEY_LENGTH:
        return None
    async with UnitOfWork(database, read_only=True) as uow:
        return await uow.licenses.current(key)
