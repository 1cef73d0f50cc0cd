"""Attribution and the audit log: every event names its actor (a token with its label, or a system job);
partner admins read their own partner's log, staff any partner's; the CSV export streams the same."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from app.demo import DEMO_CATALOG
from app.devstripe import LocalStripe
from domain.clock import SettableClock
from domain.partners import Partner
from domain.payments import CollectionPolicy
from payments.stripe_gateway import StripeGateway
from persistence import migrate
from persistence.database import Database
from persistence.unit_of_work import UnitOfWork
from resolvers import audit_log
from resolvers.dunning import run_dunning
from resolvers.partners import new_partner_id
from resolvers.products import import_catalog
from tests.conftest import scratch_database_url
from tests.integration.conftest import (
    STRIPE_API_KEY,
    STRIPE_WEBHOOK_SECRET,
    Api,
    PartnerAccess,
    enrol_in_good_standing,
)
from tests.integration.license_operations import (
    ACCEPT_TRANSFER,
    START_TRANSFER,
    assign,
    fresh_site,
    issue,
    mutate,
)
from tests.integration.payment_operations import past_due_july

ACTOR = "actor { kind tokenId label job }"
ENTRY = f"partnerId seq kind subject action fromState toState at requestId details {ACTOR}"
AUDIT = f"""
query($filter: AuditLogFilter, $first: Int, $after: String) {{
  auditLog(filter: $filter, first: $first, after: $after) {{
    edges {{ cursor node {{ {ENTRY} }} }}
    pageInfo {{ hasNextPage endCursor }}
  }}
}}"""
HISTORY = f"query($key: String!) {{ license(key: $key) {{ events {{ action actorTokenId {ACTOR} }} }} }}"
CREATE = """
mutation($input: CreateApiTokenInput!) {
  createApiToken(input: $input) { token { id secret } errors { code message field } }
}"""
TOKENS = "{ apiTokens { id label role } }"


async def mint(api: Api, by: str, **input_: Any) -> dict[str, str]:
    body = await api.data(CREATE, {"input": input_}, by)
    assert body["createApiToken"]["errors"] == [], body
    token: dict[str, str] = body["createApiToken"]["token"]
    return token


async def entries(api: Api, token: str, first: int = 100, **filter_: Any) -> list[dict[str, Any]]:
    body = await api.data(AUDIT, {"filter": filter_, "first": first}, token)
    return [edge["node"] for edge in body["auditLog"]["edges"]]


async def refusal(api: Api, token: str, **filter_: Any) -> dict[str, Any]:
    body = await api.call(AUDIT, {"filter": filter_}, token)
    assert body.get("data") is None, body
    extensions: dict[str, Any] = body["errors"][0]["extensions"]
    return extensions


def actor(kind: str, token_id: str | None = None, label: str | None = None, job: str | None = None) -> dict:
    return {"kind": kind, "tokenId": token_id, "label": label, "job": job}


async def test_a_tokens_changes_name_it_and_its_label_in_the_history_and_the_audit_log(
    api: Api, good_partner: PartnerAccess
) -> None:
    bot = await mint(api, good_partner.token, partnerId=good_partner.id, role="LICENSES", label="deploy bot")
    [key] = await issue(api, bot["secret"])
    await assign(api, bot["secret"], key, fresh_site())

    logged = await entries(api, good_partner.token, actorTokenId=bot["id"])
    assert [(e["kind"], e["subject"], e["action"]) for e in logged] == [
        ("license", key, "assign"),
        ("license", key, "issue"),
    ]
    assert all(e["actor"] == actor("TOKEN", bot["id"], "deploy bot") and e["requestId"] for e in logged)
    history = (await api.data(HISTORY, {"key": key}, good_partner.token))["license"]["events"]
    assert [(e["action"], e["actorTokenId"], e["actor"]["label"]) for e in history] == [
        ("issue", bot["id"], "deploy bot"),
        ("assign", bot["id"], "deploy bot"),
    ]


async def test_a_partner_admin_reads_only_its_own_partners_entries(
    api: Api, staff_token: str, database: Database, clock: SettableClock, good_partner: PartnerAccess
) -> None:
    other = await enrol_in_good_standing(api, staff_token, database, clock, "Other Agency")
    [mine], [theirs] = await issue(api, good_partner.token), await issue(api, other.token)
    other_token = (await api.data(TOKENS, token=other.token))["apiTokens"][0]["id"]

    logged = await entries(api, good_partner.token)
    assert {e["partnerId"] for e in logged} == {good_partner.id}
    assert mine in {e["subject"] for e in logged} and theirs not in {e["subject"] for e in logged}
    assert await refusal(api, good_partner.token, partnerId=other.id) == {
        "code": "NOT_FOUND",
        "field": "partnerId",
    }
    assert (await refusal(api, good_partner.token, actorTokenId=other_token))["code"] == "NOT_FOUND"


async def test_staff_read_any_partners_entries_and_roles_without_audit_read_are_forbidden(
    api: Api, staff_token: str, good_partner: PartnerAccess
) -> None:
    [key] = await issue(api, good_partner.token)
    support = await mint(api, staff_token, staff=True, role="STAFF_SUPPORT", label="support desk")
    for token in (staff_token, support["secret"]):
        logged = await entries(api, token, partnerId=good_partner.id, kinds=["license"])
        assert logged[0]["subject"] == key and {e["partnerId"] for e in logged} == {good_partner.id}
        assert logged[0]["actor"]["kind"] == "TOKEN" and logged[0]["actor"]["tokenId"] is not None
    everyone = await entries(api, staff_token, first=100)
    assert everyone and any(e["partnerId"] == good_partner.id for e in everyone)
    for role in ("LICENSES", "BILLING", "READ_ONLY"):
        limited = await mint(api, good_partner.token, partnerId=good_partner.id, role=role)
        body = await api.call(AUDIT, {}, limited["secret"])
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        assert "`audit:read` (roles: admin, staff_admin, staff_support)" in body["errors"][0]["message"]


async def test_the_audit_log_pages_newest_first_and_filters_by_time_kind_and_action(
    api: Api, good_partner: PartnerAccess, clock: SettableClock
) -> None:
    start = clock.now()
    [early] = await issue(api, good_partner.token)
    clock.advance_to(start + timedelta(hours=1))
    later = await issue(api, good_partner.token, quantity=3)

    recent = await entries(api, good_partner.token, since=(start + timedelta(minutes=30)).isoformat())
    assert [e["subject"] for e in recent] == list(reversed(later))
    before = await entries(
        api, good_partner.token, until=(start + timedelta(minutes=30)).isoformat(), kinds=["license"]
    )
    assert early in [e["subject"] for e in before] and not set(later) & {e["subject"] for e in before}
    assert {e["kind"] for e in await entries(api, good_partner.token, kinds=["standing"])} == {"standing"}
    assert {e["action"] for e in await entries(api, good_partner.token, actions=["issue"])} == {"issue"}

    first = (await api.data(AUDIT, {"first": 2}, good_partner.token))["auditLog"]
    rest = await api.data(AUDIT, {"first": 2, "after": first["pageInfo"]["endCursor"]}, good_partner.token)
    pages = [e["node"]["seq"] for e in first["edges"] + rest["auditLog"]["edges"]]
    assert pages == sorted(pages, reverse=True) and len(set(pages)) == 4
    body = await api.call(AUDIT, {"after": "bm90IG91cnM"}, good_partner.token)
    assert body["errors"][0]["extensions"] == {"code": "INVALID_INPUT", "field": "after"}
    assert (await refusal(api, good_partner.token, since=start.isoformat(), until=start.isoformat()))[
        "field"
    ] == "until"


async def test_a_transfer_shows_the_sender_that_a_token_took_it_but_not_which(
    api: Api, staff_token: str, database: Database, clock: SettableClock, good_partner: PartnerAccess
) -> None:
    receiver = await enrol_in_good_standing(api, staff_token, database, clock, "Receiver")
    [key] = await issue(api, good_partner.token)
    code = (await mutate(api, good_partner.token, START_TRANSFER, key=key))["code"]
    assert (await mutate(api, receiver.token, ACCEPT_TRANSFER, code=code))["errors"] == []
    sent = (await api.data(HISTORY, {"key": key}, good_partner.token))["license"]["events"]
    assert sent[-1] == {"action": "transfer", "actorTokenId": None, "actor": actor("TOKEN")}
    received = (await api.data(HISTORY, {"key": key}, receiver.token))["license"]["events"]
    assert received[0]["action"] == "receive" and received[0]["actorTokenId"] is not None


async def test_month_close_and_dunning_are_recorded_as_their_system_jobs(
    api: Api,
    staff_token: str,
    database: Database,
    gateway: StripeGateway,
    localstripe: LocalStripe,
    clock: SettableClock,
) -> None:
    access, invoice = await past_due_july(api, staff_token, localstripe, clock, licenses=2)
    clock.advance_to(clock.now() + timedelta(days=28))
    await run_dunning(database, gateway, now=clock.now(), policy=CollectionPolicy())

    [finalized] = await entries(api, access.token, kinds=["invoice"], actions=["finalize"])
    # Staff started a billing run; the month-close job finalized the invoice in the background.
    assert (finalized["subject"], finalized["actor"]) == (invoice["id"], actor("SYSTEM", job="month-close"))
    dunning = await entries(api, access.token, actorJob="dunning")
    assert sorted(e["action"] for e in dunning) == ["licenses_revoked", "revoke", "revoke"]
    assert all(e["actor"] == actor("SYSTEM", job="dunning") for e in dunning)


async def test_the_cli_month_close_is_recorded_as_the_month_close_job(tmp_path: Path) -> None:
    url = await scratch_database_url(tmp_path)
    await migrate.upgrade_async(url)
    database = Database(url)
    partner = Partner(new_partner_id(), "North", "UTC", "usd", datetime(2026, 1, 5, tzinfo=UTC))
    async with UnitOfWork(database) as uow:
        await import_catalog(uow, DEMO_CATALOG)
        await uow.partners.add(partner)
    env = dict(
        os.environ,
        DATABASE_URL=url,
        PYTHONPATH=str(Path(__file__).resolve().parents[2]),
        STRIPE_API_KEY=STRIPE_API_KEY,
        STRIPE_WEBHOOK_SECRET=STRIPE_WEBHOOK_SECRET,
    )
    closed = subprocess.run(
        [sys.executable, "-m", "app.cli", "billing", "close", "--month", "2026-02"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert closed.returncode == 0, closed.stderr
    async with UnitOfWork(database, read_only=True) as uow:
        recorded = await uow.events.after(partner.id, 0)
    await database.dispose()
    assert [e.action for e in recorded] == ["finalize", "record_payment"]  # a zero invoice is paid at once
    assert {(e.actor.kind.value, e.actor.token_id, e.actor.job) for e in recorded} == {
        ("system", None, "month-close")
    }


async def test_the_csv_export_streams_the_entries_the_query_lists(
    api: Api, staff_token: str, good_partner: PartnerAccess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_log, "EXPORT_BATCH", 2)  # five rows: three batches, three transactions
    sneaky = await mint(api, good_partner.token, partnerId=good_partner.id, role="LICENSES", label="=cmd()")
    keys = await issue(api, sneaky["secret"], quantity=5)
    listed = await entries(api, good_partner.token, actorTokenId=sneaky["id"])

    response = await api.client.get(
        "/audit-log.csv",
        params={"actorTokenId": sneaky["id"], "kind": "license"},
        headers={"Authorization": f"Bearer {good_partner.token}"},
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0]) == list(audit_log.CSV_HEADER)
    assert [r["subject"] for r in rows] == [e["subject"] for e in listed] == list(reversed(keys))
    assert {(r["partner_id"], r["action"], r["actor_kind"], r["actor_token_id"]) for r in rows} == {
        (good_partner.id, "issue", "token", sneaky["id"])
    }
    # A spreadsheet would run "=cmd()" as a formula: the cell is written as text.
    assert {r["actor_label"] for r in rows} == {"'=cmd()"}


async def test_the_csv_export_is_refused_like_the_query(
    api: Api, staff_token: str, database: Database, clock: SettableClock, good_partner: PartnerAccess
) -> None:
    other = await enrol_in_good_standing(api, staff_token, database, clock, "Other")
    limited = await mint(api, good_partner.token, partnerId=good_partner.id, role="LICENSES")

    async def export(token: str | None, **params: str) -> tuple[int, dict[str, Any]]:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        response = await api.client.get("/audit-log.csv", params=params, headers=headers)
        refused = not response.headers["content-type"].startswith("text/csv")
        return response.status_code, response.json() if refused else {}

    assert (await export(None))[0] == 401
    assert (await export(limited["secret"]))[1]["code"] == "FORBIDDEN"
    assert await export(good_partner.token, partnerId=other.id) == (
        404,
        {"code": "NOT_FOUND", "message": f"No partner '{other.id}'.", "field": "partnerId"},
    )
    status, body = await export(good_partner.token, since="yesterday")
    assert (status, body["code"], body["field"]) == (400, "INVALID_INPUT", "since")
    assert (await export(good_partner.token, partner="x"))[0] == 400
    status, _ = await export(staff_token, partnerId=other.id, since="2026-07-01T00:00:00Z")
    assert status == 200
