"""Staff mutations take idempotency keys too: a replay answers the first response, nothing runs twice."""

from __future__ import annotations

from datetime import UTC, datetime

from domain.clock import SettableClock
from persistence.database import Database
from tests.integration.billing_run_operations import close_month
from tests.integration.conftest import Api
from tests.integration.test_partners import partner_count

CREATE_PARTNER = """
mutation($input: CreatePartnerInput!) {
  createPartner(input: $input) { partner { id name } errors { code field } }
}"""
CREATE_TOKEN = """
mutation($input: CreateApiTokenInput!) {
  createApiToken(input: $input) { token { id secret partnerId } errors { code } }
}"""
ADVANCE = """
mutation($input: AdvanceSandboxClockInput!) { advanceSandboxClock(input: $input) { now errors { code } } }"""


async def test_replaying_create_partner_enrols_one_partner(
    api: Api, staff_token: str, database: Database
) -> None:
    before = await partner_count(database)
    sent = {"input": {"name": "Once Only", "idempotencyKey": "enrol-once-only"}}
    first = (await api.data(CREATE_PARTNER, sent, staff_token))["createPartner"]
    again = (await api.data(CREATE_PARTNER, sent, staff_token))["createPartner"]
    assert first == again and first["errors"] == []
    assert await partner_count(database) == before + 1

    other = {"input": {"name": "Someone Else", "idempotencyKey": "enrol-once-only"}}
    reused = (await api.data(CREATE_PARTNER, other, staff_token))["createPartner"]
    assert reused["errors"] == [{"code": "IDEMPOTENCY_KEY_REUSED", "field": "idempotencyKey"}]
    assert await partner_count(database) == before + 1


async def test_replaying_create_api_token_returns_the_token_without_its_secret(
    api: Api, staff_token: str
) -> None:
    partner = (await api.data(CREATE_PARTNER, {"input": {"name": "Token Agency"}}, staff_token))[
        "createPartner"
    ]
    sent = {"input": {"partnerId": partner["partner"]["id"], "idempotencyKey": "token-for-token-agency"}}
    first = (await api.data(CREATE_TOKEN, sent, staff_token))["createApiToken"]["token"]
    again = (await api.data(CREATE_TOKEN, sent, staff_token))["createApiToken"]["token"]
    assert first["secret"].startswith("plk_")
    assert again == {**first, "secret": None}
    viewer = await api.data("{ viewer { id } }", token=first["secret"])
    assert viewer["viewer"]["id"] == partner["partner"]["id"]


async def test_replaying_advance_sandbox_clock_answers_the_first_instant(
    api: Api, staff_token: str, clock: SettableClock
) -> None:
    sent = {"input": {"to": "2026-07-15T00:00:00Z", "idempotencyKey": "to-july-15"}}
    first = (await api.data(ADVANCE, sent, staff_token))["advanceSandboxClock"]
    clock.advance_to(datetime(2026, 7, 20, tzinfo=UTC))
    again = (await api.data(ADVANCE, sent, staff_token))["advanceSandboxClock"]
    assert first == again == {"now": "2026-07-15T00:00:00+00:00", "errors": []}
    assert clock.now() == datetime(2026, 7, 20, tzinfo=UTC)  # the replay did not move the clock back


async def test_replaying_close_billing_month_answers_the_first_report(
    api: Api, staff_token: str, clock: SettableClock
) -> None:
    await api.data(CREATE_PARTNER, {"input": {"name": "Closing Agency"}}, staff_token)
    clock.advance_to(datetime(2026, 8, 1, 1, 0, tzinfo=UTC))
    first = await close_month(api, "2026-07", staff_token, idempotency_key="close-july-run-1")
    again = await close_month(api, "2026-07", staff_token, idempotency_key="close-july-run-1")
    rerun = await close_month(api, "2026-07", staff_token)
    assert first["closed"] >= 1 and first == again
    assert rerun["closed"] == 0  # without the key it runs again, and finds the month closed
