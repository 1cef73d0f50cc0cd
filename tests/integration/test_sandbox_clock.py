"""The sandbox clock: staff move it forward; outside sandbox mode it does not move."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from app.http import create_app
from domain.clock import LATEST_SANDBOX_INSTANT, SettableClock
from tests.integration.conftest import Api, PartnerAccess, own_secrets
from tests.integration.license_operations import issue

ESTIMATE = "query { billingEstimate { month licenseDays costs { total { amount } } } }"

ADVANCE = """
mutation($to: DateTime!) { advanceSandboxClock(input: {to: $to}) { now errors { code message field } } }"""


async def test_staff_moves_the_sandbox_clock_to_the_first_of_the_month(
    api: Api, staff_token: str, clock: SettableClock
) -> None:
    body = await api.data(ADVANCE, {"to": "2026-08-01T00:00:00+02:00"}, staff_token)
    assert body["advanceSandboxClock"] == {"now": "2026-07-31T22:00:00+00:00", "errors": []}
    assert clock.now().isoformat() == "2026-07-31T22:00:00+00:00"


async def test_the_sandbox_clock_never_goes_back(api: Api, staff_token: str) -> None:
    body = await api.data(ADVANCE, {"to": "2020-01-01T00:00:00Z"}, staff_token)
    assert body["advanceSandboxClock"]["errors"][0]["code"] == "CLOCK_BACKWARDS"


async def test_partners_cannot_move_the_clock(api: Api, partner: PartnerAccess) -> None:
    body = await api.data(ADVANCE, {"to": "2030-01-01T00:00:00Z"}, partner.token)
    assert body["advanceSandboxClock"]["errors"][0]["code"] == "FORBIDDEN"


async def test_outside_sandbox_mode_the_clock_is_refused(database_url: str, staff_token: str) -> None:
    app = create_app(own_secrets(database_url=database_url, sandbox=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.post(
            "/graphql",
            json={"query": ADVANCE, "variables": {"to": "2030-01-01T00:00:00Z"}},
            headers={"Authorization": f"Bearer {staff_token}"},
        )
    assert response.json()["data"]["advanceSandboxClock"]["errors"][0]["code"] == "SANDBOX_DISABLED"
    await app.state.services.database.dispose()


async def test_a_clock_target_that_would_break_date_arithmetic_is_refused(
    api: Api, staff_token: str, good_partner: PartnerAccess, clock: SettableClock
) -> None:
    before = clock.now()
    for target in ["9999-12-31T00:00:00Z", "9999-12-31T23:00:00-05:00", "2036-07-01T09:00:01Z"]:
        body = await api.data(ADVANCE, {"to": target}, staff_token)
        [error] = body["advanceSandboxClock"]["errors"]
        assert (body["advanceSandboxClock"]["now"], error["code"], error["field"]) == (
            None,
            "INVALID_INPUT",
            "to",
        )
    assert clock.now() == before
    assert (await api.data(ESTIMATE, token=good_partner.token))["billingEstimate"]["month"] == "2026-07"


async def test_the_estimate_works_after_the_largest_allowed_advance(
    api: Api, staff_token: str, good_partner: PartnerAccess, clock: SettableClock
) -> None:
    await issue(api, good_partner.token)
    ten_years_on = (await api.data(ADVANCE, {"to": "2036-07-01T09:00:00Z"}, staff_token))[
        "advanceSandboxClock"
    ]
    assert ten_years_on == {"now": "2036-07-01T09:00:00+00:00", "errors": []}
    assert (await api.data(ESTIMATE, token=good_partner.token))["billingEstimate"]["licenseDays"] == 31
    while clock.latest_target() < LATEST_SANDBOX_INSTANT:  # the way there, ten years at a time
        clock.advance_to(clock.latest_target())
    last = (await api.data(ADVANCE, {"to": LATEST_SANDBOX_INSTANT.isoformat()}, staff_token))[
        "advanceSandboxClock"
    ]
    assert (last["now"], last["errors"]) == ("9000-01-01T00:00:00+00:00", [])
    estimate = (await api.data(ESTIMATE, token=good_partner.token))["billingEstimate"]
    assert (estimate["month"], estimate["licenseDays"]) == ("9000-01", 31)
    assert estimate["costs"]["total"]["amount"] > 0
    assert clock.now() == datetime(9000, 1, 1, tzinfo=UTC)
    refused = (await api.data(ADVANCE, {"to": "9000-01-01T00:00:01Z"}, staff_token))["advanceSandboxClock"]
    assert refused["errors"][0]["code"] == "INVALID_INPUT"
