"""validateLicense: no token, only the key and the site; rate-limited per client address and overall."""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from domain.license_checks import LicenseCheck, check_license, rate_limited
from domain.sites import normalize_site
from resolvers.context import RequestContext

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
    if ctx.license_checks is not None:
        wait = await ctx.license_checks.retry_after(ctx.client_address or "unknown")
        if wait is not None:
            return rate_limited(wait)
    normalized = normalize_site(site)
    if len(key) > MAX_KEY_LENGTH:
        return check_license(None, key, normalized)
    async with ctx.reader() as uow:
        holding = await uow.licenses.current(key)
    return check_license(holding, key, normalized)
