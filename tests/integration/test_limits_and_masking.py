"""Hostile queries are refused before execution; unexpected failures never leak internals."""

from __future__ import annotations

from pathlib import Path

import httpx

from app.http import create_app
from app.settings import Settings
from domain.principals import Principal
from persistence.database import Database
from resolvers.context import RequestContext
from schema.build import build_schema
from schema.limits import QueryLimits
from tests.integration.conftest import Api, PartnerAccess, own_secrets


async def test_over_deep_query_is_rejected_before_execution(
    database_url: str, partner: PartnerAccess
) -> None:
    # Lower the configured limit (leaves do not count) rather than build a huge query.
    app = create_app(own_secrets(database_url=database_url, query_limits=QueryLimits(max_depth=0)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.post(
            "/graphql",
            json={"query": "{ viewer { id } }"},
            headers={"Authorization": f"Bearer {partner.token}"},
        )
    body = response.json()
    assert body["errors"][0]["message"] == "The operation is nested deeper than 0 levels."
    assert body["errors"][0]["extensions"]["code"] == "QUERY_TOO_COMPLEX"
    assert body.get("data") is None
    await app.state.services.database.dispose()


async def test_too_many_aliases_are_rejected(api: Api, partner: PartnerAccess) -> None:
    wide = "{ " + " ".join(f"a{i}: viewer {{ id }}" for i in range(40)) + " }"
    body = await api.call(wide, token=partner.token)
    assert "aliases" in body["errors"][0]["message"].lower()
    assert body.get("data") is None


async def test_too_many_tokens_are_rejected(api: Api, partner: PartnerAccess) -> None:
    huge = "{ viewer { " + " ".join(["id"] * 3000) + " } }"
    body = await api.call(huge, token=partner.token)
    assert "token" in body["errors"][0]["message"].lower()


async def test_unexpected_failure_is_masked_with_a_request_id(tmp_path: Path, clock: object) -> None:
    broken = Database(f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'nope.db'}")
    context = RequestContext(
        database=broken,
        clock=clock,  # type: ignore[arg-type]
        principal=Principal(token_id="tok_x", partner_id="ptr_x", is_staff=False),
        request_id="req-123",
        support=Settings().support,
    )
    result = await build_schema().execute("{ viewer { id } }", context_value=context)
    assert result.errors is not None
    error = result.errors[0]
    assert error.message == "Internal server error. Quote request id req-123 to support."
    assert error.extensions == {"code": "INTERNAL_SERVER_ERROR", "requestId": "req-123"}
    assert "sqlite" not in error.message.lower()
    await broken.dispose()


async def test_every_response_carries_a_request_id(api: Api) -> None:
    response = await api.client.post("/graphql", json={"query": "{ support { email } }"})
    assert len(response.headers["x-request-id"]) == 32
