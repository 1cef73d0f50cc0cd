"""/readyz: can this worker serve? Its database, its feed listener (PostgreSQL) and Stripe.

/healthz only says the process is alive (a liveness probe: restart it if not); /readyz says whether to
send it traffic. A worker without Stripe still serves reads, but it cannot add cards or charge, so it is
reported not ready; the load balancer decides what to do with that.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse

from persistence.database import Database

# Stripe is asked at most this often: probes come every few seconds from every balancer.
STRIPE_PROBE_TTL_SECONDS = 10.0
STRIPE_PROBE_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class Check:
    ok: bool
    detail: str


class StripeProbe:
    """An authenticated, read-only Stripe call (list one customer); the answer is kept for a while."""

    def __init__(self, api_base: str, api_key: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.url = f"{api_base.rstrip('/')}/v1/customers"
        self.api_key = api_key
        self.clock = clock
        self._last: tuple[float, Check] | None = None

    async def check(self) -> Check:
        now = self.clock()
        if self._last is not None and now - self._last[0] < STRIPE_PROBE_TTL_SECONDS:
            return self._last[1]
        result = await self._ask()
        self._last = (now, result)
        return result

    async def _ask(self) -> Check:
        try:
            async with httpx.AsyncClient(timeout=STRIPE_PROBE_TIMEOUT_SECONDS) as client:
                answer = await client.get(
                    self.url, params={"limit": 1}, headers={"Authorization": f"Bearer {self.api_key}"}
                )
        except httpx.HTTPError as error:
            return Check(False, f"unreachable ({type(error).__name__})")
        if answer.status_code == 401:
            return Check(False, "the API key was refused")
        if answer.status_code >= 400:
            return Check(False, f"answered HTTP {answer.status_code}")
        return Check(True, "reachable")


class Readiness:
    """The three checks behind /readyz."""

    def __init__(self, database: Database, stripe: StripeProbe, listener_up: Callable[[], bool]) -> None:
        self.database = database
        self.stripe = stripe
        self.listener_up = listener_up

    async def endpoint(self, _request: Request) -> JSONResponse:
        database = await self.database.is_reachable()
        if self.database.is_sqlite:
            listener = Check(True, "in-process wake-ups (SQLite)")
        elif self.listener_up():
            listener = Check(True, "listening")
        else:
            listener = Check(False, "not connected to PostgreSQL; reconnecting")
        checks = {
            "database": Check(database, "reachable" if database else "unreachable"),
            "feed_listener": listener,
            "stripe": await self.stripe.check(),
        }
        ready = all(check.ok for check in checks.values())
        body = {
            "status": "ready" if ready else "not ready",
            "checks": {name: {"ok": check.ok, "detail": check.detail} for name, check in checks.items()},
        }
        return JSONResponse(body, status_code=200 if ready else 503)
