"""Fuzzing a real `licensing serve` (uvicorn, the database under test, localstripe) with kept tools:
schemathesis generates every query and mutation of the live schema with partner and staff tokens, and
Hypothesis throws arbitrary JSON and bytes at /graphql and /webhooks/stripe. Nothing may answer a 5xx or
a masked INTERNAL_SERVER_ERROR. Examples per test are bounded (LICENSING_FUZZ_EXAMPLES) so CI stays fast.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis.graphql
from graphql import get_introspection_query, graphql_sync
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.devstripe import LocalStripe, free_port
from schema.build import build_schema
from tests.conftest import scratch_database_url
from tests.integration.conftest import STRIPE_API_KEY, STRIPE_WEBHOOK_SECRET

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = int(os.environ.get("LICENSING_FUZZ_EXAMPLES", "12"))
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)

# The live schema, introspected in-process (by graphql-core: the schema's extensions run only async):
# the operations are known at collection time.
INTROSPECTION = graphql_sync(build_schema()._schema, get_introspection_query()).data
LIVE_SCHEMA = schemathesis.graphql.from_dict(INTROSPECTION)
OPERATIONS = {result.ok().label: result.ok() for result in LIVE_SCHEMA.get_all_operations()}


@dataclass(frozen=True)
class FuzzTarget:
    base_url: str
    tokens: dict[str, str]


def in_own_loop(coroutine: Any) -> Any:
    """Run a coroutine to completion outside the test session's event loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory, localstripe: LocalStripe) -> Iterator[FuzzTarget]:
    """The demo (catalog, a partner in good standing, tokens) served by a real uvicorn process."""
    workdir = tmp_path_factory.mktemp("fuzz")
    env = dict(
        os.environ,
        DATABASE_URL=in_own_loop(scratch_database_url(workdir)),
        LICENSING_SANDBOX="1",
        PYTHONPATH=str(ROOT),
        STRIPE_API_BASE=localstripe.base_url,
        STRIPE_API_KEY=STRIPE_API_KEY,
        STRIPE_WEBHOOK_SECRET=STRIPE_WEBHOOK_SECRET,
    )
    port = free_port()
    licensing = [sys.executable, "-m", "app.cli"]
    access_file = workdir / "access.json"
    demo = [*licensing, "demo", "--access-file", str(access_file), "--port", str(port)]
    subprocess.run(demo, env=env, cwd=workdir, capture_output=True, timeout=120, check=True)
    access = json.loads(access_file.read_text())
    with (workdir / "serve.log").open("wb") as log:
        server = subprocess.Popen(
            [*licensing, "serve", "--port", str(port)],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base_url, server)
        yield FuzzTarget(base_url, {"partner": access["partner_token"], "staff": access["staff_token"]})
    finally:
        server.terminate()
        server.wait(timeout=10)


def wait_until_healthy(base_url: str, server: subprocess.Popen[bytes]) -> None:
    for _ in range(150):
        assert server.poll() is None, "licensing serve exited"
        try:
            if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError("licensing serve did not start")


def assert_no_server_error(response: Any, sent: object) -> None:
    assert response.status_code < 500, (sent, response.status_code, response.text[:500])
    body = response.json()
    errors = body.get("errors") or [] if isinstance(body, dict) else []
    masked = [e for e in errors if (e.get("extensions") or {}).get("code") == "INTERNAL_SERVER_ERROR"]
    assert not masked, (sent, masked)
    assert response.headers.get("x-request-id")


@pytest.mark.parametrize("role", ["partner", "staff"])
@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_generated_operations_never_answer_5xx_or_a_masked_error(
    fuzz_target: FuzzTarget, label: str, role: str
) -> None:
    headers = {"Authorization": f"Bearer {fuzz_target.tokens[role]}"}

    @FUZZ_SETTINGS
    @given(case=OPERATIONS[label].as_strategy())
    def check(case: Any) -> None:
        response = case.call(base_url=f"{fuzz_target.base_url}/graphql", headers=headers, timeout=30)
        assert_no_server_error(response, case.body)

    check()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)
GRAPHQL_BODIES = st.one_of(
    JSON_VALUES,
    st.fixed_dictionaries(
        {"query": st.one_of(st.text(), st.just("{ support { email } }"), JSON_VALUES)},
        optional={"variables": JSON_VALUES, "operationName": JSON_VALUES, "extensions": JSON_VALUES},
    ),
)


@FUZZ_SETTINGS
@given(body=st.one_of(GRAPHQL_BODIES.map(lambda v: json.dumps(v).encode()), st.binary(max_size=300)))
def test_any_body_posted_to_graphql_is_answered_without_a_5xx(fuzz_target: FuzzTarget, body: bytes) -> None:
    response = httpx.post(
        f"{fuzz_target.base_url}/graphql",
        content=body,
        headers={
            "content-type": "application/json",
            "Authorization": f"Bearer {fuzz_target.tokens['partner']}",
        },
        timeout=30,
    )
    assert_no_server_error(response, body)


@FUZZ_SETTINGS
@given(
    body=st.one_of(JSON_VALUES.map(lambda v: json.dumps(v).encode()), st.binary(max_size=300)),
    signature=st.one_of(
        st.none(), st.text(max_size=80), st.builds("t={},v1={}".format, st.integers(), st.text(max_size=64))
    ),
)
def test_any_body_posted_to_the_stripe_webhook_is_refused_without_a_5xx(
    fuzz_target: FuzzTarget, body: bytes, signature: str | None
) -> None:
    headers = {"content-type": "application/json"}
    if signature is not None and signature.isascii() and signature.isprintable():
        headers["stripe-signature"] = signature
    response = httpx.post(
        f"{fuzz_target.base_url}/webhooks/stripe", content=body, headers=headers, timeout=30
    )
    assert response.status_code == 400, (body, signature, response.status_code, response.text[:300])
