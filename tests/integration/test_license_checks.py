"""validateLicense: a product plugin on a client's site asks with only the key; no token."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx

from app.devstripe import LocalStripe
from app.http import create_app
from app.settings import Settings
from domain.clock import SettableClock
from payments.stripe_gateway import StripeGateway
from tests.integration.conftest import Api, PartnerAccess, stripe_settings
from tests.integration.license_operations import REVOKE, assign, fresh_site, issue, mutate

VALIDATE = """
query($key: String!, $site: String!) {
  validateLicense(key: $key, site: $site) { valid state productSlug reason retryAfterSeconds }
}"""


async def validate(api: Api, key: str, site: str) -> dict[str, Any]:
    return (await api.data(VALIDATE, {"key": key, "site": site}))["validateLicense"]


def answer(valid: bool, state: str | None, reason: str | None) -> dict[str, Any]:
    slug = None if state is None else "jetpack-backup"
    return {"valid": valid, "state": state, "productSlug": slug, "reason": reason, "retryAfterSeconds": None}


async def test_a_key_is_valid_only_on_its_own_site_and_says_why_not_elsewhere(
    api: Api, good_partner: PartnerAccess
) -> None:
    (key,) = await issue(api, good_partner.token)
    site = fresh_site()
    assert await validate(api, key, site) == answer(False, "ISSUED", "NOT_ASSIGNED")
    await assign(api, good_partner.token, key, site)
    assert await validate(api, key, site.upper() + "/") == answer(True, "ASSIGNED", None)
    assert await validate(api, key, fresh_site("elsewhere")) == answer(False, "ASSIGNED", "WRONG_SITE")
    await mutate(api, good_partner.token, REVOKE, key=key)
    assert await validate(api, key, site) == answer(False, "REVOKED", "REVOKED")


async def test_a_key_that_never_existed_is_not_found_and_a_bad_site_is_invalid(api: Api) -> None:
    assert await validate(api, "jetpack-backup_doesnotexist", fresh_site()) == answer(
        False, None, "NOT_FOUND"
    )
    body = await api.call(VALIDATE, {"key": "jetpack-backup_x", "site": "not a url"})
    assert body["errors"][0]["extensions"]["code"] == "INVALID_SITE"


@contextlib.asynccontextmanager
async def clients_from(
    addresses: list[str], settings: Settings, clock: SettableClock, gateway: StripeGateway
) -> AsyncIterator[list[Api]]:
    """One app with `settings`, and a client for it from each address (as the server sees the peer)."""
    app = create_app(settings, clock=clock, gateway=gateway)
    async with contextlib.AsyncExitStack() as stack:
        clients = []
        for address in addresses:
            transport = httpx.ASGITransport(app=app, client=(address, 4000))
            client = httpx.AsyncClient(transport=transport, base_url="http://testserver")
            clients.append(Api(await stack.enter_async_context(client)))
        yield clients
    await app.state.services.database.dispose()


async def test_a_burst_from_one_address_is_rate_limited_with_a_retry_after(
    database_url: str, clock: SettableClock, localstripe: LocalStripe, gateway: StripeGateway
) -> None:
    settings = stripe_settings(database_url, localstripe).replace(license_checks_per_address="20/minute")
    addresses = ["203.0.113.7", "198.51.100.9"]
    async with clients_from(addresses, settings, clock, gateway) as clients:
        answers = [[await validate(api, "x_unknown", fresh_site()) for _ in range(25)] for api in clients]
    for burst in answers:
        assert [a["reason"] for a in burst] == ["NOT_FOUND"] * 20 + ["RATE_LIMITED"] * 5
        assert all(1 <= a["retryAfterSeconds"] <= 60 for a in burst[20:])


async def test_every_address_together_is_held_to_the_overall_limit(
    database_url: str, clock: SettableClock, localstripe: LocalStripe, gateway: StripeGateway
) -> None:
    settings = stripe_settings(database_url, localstripe).replace(license_checks_overall="10/minute")
    addresses = [f"192.0.2.{number}" for number in range(12)]
    async with clients_from(addresses, settings, clock, gateway) as clients:
        reasons = [(await validate(api, "x_unknown", fresh_site()))["reason"] for api in clients]
    assert reasons == ["NOT_FOUND"] * 10 + ["RATE_LIMITED"] * 2
