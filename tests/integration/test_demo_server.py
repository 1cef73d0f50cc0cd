"""`make run` end to end: the CLI migrates and seeds, uvicorn serves, GraphiQL and the API answer."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ON_POSTGRES
from tests.localstripe_server import free_port

LICENSING = [sys.executable, "-m", "app.cli"]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def demo_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ, LICENSING_SANDBOX="1", PYTHONPATH=str(ROOT))
    # The demo always runs on its own SQLite file, like `make run` on a fresh clone.
    env["DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}"
    return env


def run_demo(env: dict[str, str], tmp_path: Path, port: int) -> str:
    done = subprocess.run(
        [*LICENSING, "demo", "--access-file", str(tmp_path / "access.json"), "--port", str(port)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout


@pytest.fixture
def server(demo_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, str]]:
    port = free_port()
    printed = run_demo(demo_env, tmp_path, port)
    process = subprocess.Popen(
        [*LICENSING, "serve", "--port", str(port)],
        env=demo_env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise AssertionError("uvicorn did not start")
        yield base, printed
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.mark.skipif(ON_POSTGRES, reason="the demo runs on SQLite; this pass already ran it")
def test_demo_prints_graphiql_tokens_and_a_working_example(server: tuple[str, str]) -> None:
    base, printed = server
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
