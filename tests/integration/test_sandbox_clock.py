"""The sandbox clock: staff move it forward; outside sandbox mode it does not move."""

from __future__ import annotations

import httpx

from app.http import create_app
from domain.clock import SettableClock
from tests.integration.conftest import Api, PartnerAccess, own_secrets

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
