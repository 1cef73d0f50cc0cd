"""Standing gates: no card or a past-due invoice pauses issuing and assigning, never shrinking the bill."""

from __future__ import annotations

from domain.clock import SettableClock
from domain.standing import StandingEvent
from persistence.database import Database
from tests.integration.conftest import Api, PartnerAccess, move_standing
from tests.integration.license_operations import (
    ASSIGN,
    ISSUE,
    LICENSE,
    REVOKE,
    START_TRANSFER,
    UNASSIGN,
    assign,
    fresh_site,
    issue,
    mutate,
)

STANDING = """{ viewer { standing {
  state since reasonInvoiceId allowedActions blockedActions { action code }
} } }"""


async def test_a_new_partner_has_no_payment_method_and_cannot_issue(
    api: Api, partner: PartnerAccess, clock: SettableClock
) -> None:
    standing = (await api.data(STANDING, token=partner.token))["viewer"]["standing"]
    assert standing["state"] == "NO_PAYMENT_METHOD"
    assert standing["blockedActions"] == [
        {"action": "ISSUE", "code": "NO_PAYMENT_METHOD"},
        {"action": "ASSIGN", "code": "NO_PAYMENT_METHOD"},
        {"action": "ACCEPT_TRANSFER", "code": "NO_PAYMENT_METHOD"},
    ]
    assert standing["allowedActions"] == ["REVOKE", "UNASSIGN", "TRANSFER_OUT"]
    body = await api.data(
        ISSUE, {"input": {"items": [{"productSlug": "jetpack-backup", "quantity": 1}]}}, partner.token
    )
    assert body["issueLicenses"] == {
        "licenses": [],
        "errors": [
            {
                "code": "NO_PAYMENT_METHOD",
                "message": "Issuing licenses is paused until a payment method is on file.",
                "field": None,
            }
        ],
    }
    counts = await api.data("{ licenseCounts { all } }", token=partner.token)
    assert counts["licenseCounts"]["all"] == 0


async def test_past_due_blocks_issue_and_assign_but_not_revoke_unassign_or_transfer_out(
    api: Api, good_partner: PartnerAccess, database: Database, clock: SettableClock
) -> None:
    keys = await issue(api, good_partner.token, "jetpack-scan", 4)
    await assign(api, good_partner.token, keys[0], fresh_site())
    await move_standing(
        database, good_partner.id, StandingEvent.INVOICE_PAST_DUE, clock.now(), invoice_id="inv_0042"
    )
    standing = (await api.data(STANDING, token=good_partner.token))["viewer"]["standing"]
    assert (standing["state"], standing["reasonInvoiceId"]) == ("PAST_DUE", "inv_0042")
    assert standing["since"] == clock.now().isoformat()

    body = await api.data(
        ISSUE, {"input": {"items": [{"productSlug": "jetpack-scan", "quantity": 1}]}}, good_partner.token
    )
    assert body["issueLicenses"]["errors"][0]["code"] == "ACCOUNT_PAST_DUE"
    assert "inv_0042" in body["issueLicenses"]["errors"][0]["message"]
    refused = await mutate(api, good_partner.token, ASSIGN, key=keys[1], site=fresh_site())
    assert refused["errors"][0]["code"] == "ACCOUNT_PAST_DUE"
    assert (await api.data(LICENSE, {"key": keys[1]}, good_partner.token))["license"]["state"] == "ISSUED"

    assert (await mutate(api, good_partner.token, UNASSIGN, key=keys[0]))["errors"] == []
    assert (await mutate(api, good_partner.token, REVOKE, key=keys[2]))["errors"] == []
    assert (await mutate(api, good_partner.token, START_TRANSFER, key=keys[3]))["errors"] == []


async def test_settling_restores_good_standing_when_a_card_is_on_file(
    api: Api, good_partner: PartnerAccess, database: Database, clock: SettableClock
) -> None:
    await move_standing(
        database, good_partner.id, StandingEvent.INVOICE_PAST_DUE, clock.now(), invoice_id="inv_1"
    )
    await move_standing(
        database, good_partner.id, StandingEvent.PAST_DUE_SETTLED, clock.now(), has_payment_method=True
    )
    standing = (await api.data(STANDING, token=good_partner.token))["viewer"]["standing"]
    assert (standing["state"], standing["reasonInvoiceId"], standing["blockedActions"]) == ("GOOD", None, [])
    assert await issue(api, good_partner.token)


async def test_removing_the_last_card_pauses_issuing(
    api: Api, good_partner: PartnerAccess, database: Database, clock: SettableClock
) -> None:
    await move_standing(database, good_partner.id, StandingEvent.LAST_PAYMENT_METHOD_REMOVED, clock.now())
    body = await api.data(
        ISSUE, {"input": {"items": [{"productSlug": "jetpack-backup", "quantity": 1}]}}, good_partner.token
    )
    assert body["issueLicenses"]["errors"][0]["code"] == "NO_PAYMENT_METHOD"
