"""`make run` end to end: the CLI migrates and seeds, uvicorn serves, GraphiQL and the API answer."""

from __future__ import annotations

import json
import re
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from app.devstripe import LocalStripe, free_port
from tests.conftest import ON_POSTGRES
from tests.integration.conftest import LICENSING, DemoServer, run_demo, stripe_env


@pytest.mark.skipif(ON_POSTGRES, reason="the demo runs on SQLite; this pass already ran it")
def test_demo_prints_graphiql_tokens_and_a_working_example(server: DemoServer) -> None:
    base, printed = server.base, server.printed
    assert f"GraphiQL:        {base}/graphql" in printed
    partner_token = re.search(r"partner token:\s+(\S+)", printed).group(1)  # type: ignore[union-attr]
    staff_token = re.search(r"staff token:\s+(\S+)", printed).group(1)  # type: ignore[union-attr]
    query = re.search(r"^  (\{ viewer .*\})$", printed, re.M).group(1)  # type: ignore[union-attr]

    answer = httpx.post(
        f"{base}/graphql", json={"query": query}, headers={"Authorization": f"Bearer {partner_token}"}
    ).json()
    assert answer["data"]["viewer"]["name"] == "Demo Agency"
    assert len(answer["data"]["products"]) == 9

    staff = httpx.post(
        f"{base}/graphql",
        json={"query": "{ products { slug } }"},
        headers={"Authorization": f"Bearer {staff_token}"},
    ).json()
    assert "errors" not in staff

    wallet = httpx.post(
        f"{base}/graphql",
        json={"query": "{ viewer { standing { state } paymentMethods { nodes { brand last4 primary } } } }"},
        headers={"Authorization": f"Bearer {partner_token}"},
    ).json()["data"]["viewer"]
    assert wallet["standing"]["state"] == "GOOD"
    assert wallet["paymentMethods"]["nodes"] == [{"brand": "visa", "last4": "4242", "primary": True}]

    graphiql = httpx.get(f"{base}/graphql", headers={"Accept": "text/html"})
    assert graphiql.status_code == 200 and "graphiql" in graphiql.text.lower()


@pytest.mark.skipif(ON_POSTGRES, reason="the demo runs on SQLite; this pass already ran it")
def test_rerunning_the_demo_keeps_the_data(demo_env: dict[str, str], tmp_path: Path) -> None:
    first = run_demo(demo_env, tmp_path, 8000)
    second = run_demo(demo_env, tmp_path, 8000)
    assert first == second
    saved = json.loads((tmp_path / "access.json").read_text())
    assert saved["partner_id"] in second


@pytest.mark.skipif(ON_POSTGRES, reason="CLI administration is exercised once, on SQLite")
def test_cli_creates_partners_and_tokens(demo_env: dict[str, str], tmp_path: Path) -> None:
    def licensing(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*LICENSING, *args], env=demo_env, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )

    assert licensing("migrate").returncode == 0
    created = licensing("partner", "create", "CLI Agency", "--zone", "Europe/Paris", "--currency", "eur")
    partner_id = created.stdout.strip()
    assert created.returncode == 0 and partner_id.startswith("ptr_")
    token = licensing("token", "create", "--partner", partner_id)
    assert token.returncode == 0 and token.stdout.startswith("plk_")
    refused = licensing("partner", "create", "Bad Zone", "--zone", "Nowhere/Land")
    assert refused.returncode == 1
    assert "UNKNOWN_TIME_ZONE" in refused.stderr


async def demo_wallet(env: dict[str, str]) -> tuple[str, list[str]]:
    """The demo partner's standing and its cards' Stripe ids, read from the demo database."""
    from persistence.database import Database
    from persistence.unit_of_work import UnitOfWork

    database = Database(env["DATABASE_URL"])
    try:
        async with UnitOfWork(database, read_only=True) as uow:
            [partner_id] = await uow.partners.ids_created_before(datetime.max.replace(tzinfo=UTC))
            standing = await uow.standing.get(partner_id)
            cards = await uow.payment_methods.active(partner_id)
    finally:
        await database.dispose()
    assert standing is not None
    return standing.state.value, [card.stripe_id for card in cards]


@pytest.mark.skipif(ON_POSTGRES, reason="the demo runs on SQLite; this pass already ran it")
async def test_rerunning_the_demo_after_localstripe_restarted_attaches_a_fresh_card(
    demo_env: dict[str, str], tmp_path: Path
) -> None:
    run_demo(demo_env, tmp_path, 8000)
    state, [first_card] = await demo_wallet(demo_env)
    assert state == "good"
    restarted = LocalStripe(free_port())  # a new localstripe knows nothing of the first
    try:
        restarted.wait_until_ready()
        run_demo(dict(demo_env, **stripe_env(restarted)), tmp_path, 8000)
    finally:
        restarted.stop()
    state, cards = await demo_wallet(demo_env)
    assert state == "good" and len(cards) == 1 and cards != [first_card]


@pytest.mark.skipif(ON_POSTGRES, reason="CLI collection work is exercised once, on SQLite")
def test_cli_runs_due_dunning_work(demo_env: dict[str, str], tmp_path: Path) -> None:
    run_demo(demo_env, tmp_path, 8000)
    done = subprocess.run(
        [*LICENSING, "billing", "dunning", "--at", "2026-08-04T00:30:00+00:00"],
        env=demo_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "past-due retries: paid 0, past due 0, uncollected 0" in done.stdout
    assert "licenses revoked: 0 (partners: 0)" in done.stdout
