"""`licensing token create|list|revoke`, as an operator runs them."""

from __future__ import annotations

from pathlib import Path

import httpx

from app.devstripe import LocalStripe
from app.http import create_app
from domain.clock import SettableClock
from persistence.database import Database
from persistence.unit_of_work import UnitOfWork
from tests.conftest import scratch_database_url
from tests.integration.conftest import Api, stripe_settings
from tests.integration.test_fresh_install import licensing


async def test_an_operator_mints_lists_and_revokes_a_read_only_token(
    tmp_path: Path, clock: SettableClock, localstripe: LocalStripe
) -> None:
    url = await scratch_database_url(tmp_path)
    licensing(url, "migrate")
    partner_id = licensing(url, "partner", "create", "CLI Agency").strip()
    secret = licensing(
        url, "token", "create", "--partner", partner_id, "--role", "read_only", "--label", "ro"
    )
    (line,) = licensing(url, "token", "list", "--partner", partner_id).splitlines()
    token_id, role = line.split()[:2]
    assert (role, line.split()[-1]) == ("read_only", "ro")

    app = create_app(stripe_settings(url, localstripe), clock=clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        api = Api(client)
        assert (await api.data("{ viewer { id } }", token=secret.strip()))["viewer"]["id"] == partner_id
        assert f"revoked {token_id}" in licensing(url, "token", "revoke", token_id)
        refused = await api.call("{ viewer { id } }", token=secret.strip())
    await app.state.services.database.dispose()
    assert refused["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "revoked 20" in licensing(url, "token", "list")
    # Both changes are on the partner's feed and audit log, made by the operator at the command line.
    database = Database(url)
    async with UnitOfWork(database, read_only=True) as uow:
        recorded = await uow.events.after(partner_id, 0)
    await database.dispose()
    assert [(e.stream, e.action, e.subject, e.actor.kind.value, e.actor.job) for e in recorded] == [
        ("api_token", "created", token_id, "system", "operator-cli"),
        ("api_token", "revoked", token_id, "system", "operator-cli"),
    ]
