"""Outside sandbox mode the service refuses Stripe's public defaults, and never prints a DB password."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import make_url

from app.http import create_app
from app.settings import InsecureSettings, Settings
from persistence.database import masked_url
from tests.conftest import scratch_database_url
from tests.integration.conftest import STRIPE_API_KEY, STRIPE_WEBHOOK_SECRET

ROOT = Path(__file__).resolve().parents[2]


def licensing(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI with only the given settings (none inherited from the engineer's shell)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("STRIPE_", "LICENSING_", "DATABASE_"))}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=clean | {"PYTHONPATH": str(ROOT)} | env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_serve_refuses_to_start_with_the_public_webhook_secret_and_names_the_variable(tmp_path: Path) -> None:
    refused = licensing(
        "serve", "--port", "1", DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", STRIPE_API_KEY="sk_x"
    )

    assert refused.returncode == 2
    assert "STRIPE_WEBHOOK_SECRET is the public default 'whsec_localstripe'" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_serve_refuses_to_start_with_the_default_api_key_and_names_the_variable(tmp_path: Path) -> None:
    refused = licensing("serve", "--port", "1", STRIPE_WEBHOOK_SECRET="whsec_own")

    assert refused.returncode == 2
    assert "STRIPE_API_KEY is the public default" in refused.stderr


@pytest.mark.parametrize(
    ("secrets", "named"),
    [
        ({"stripe_api_key": STRIPE_API_KEY}, "STRIPE_WEBHOOK_SECRET"),
        ({"stripe_webhook_secret": STRIPE_WEBHOOK_SECRET}, "STRIPE_API_KEY"),
    ],
)
def test_the_app_is_not_built_outside_sandbox_mode_with_a_default_stripe_secret(
    database_url: str, secrets: dict[str, str], named: str
) -> None:
    with pytest.raises(InsecureSettings, match=named):
        create_app(Settings(database_url=database_url, sandbox=False, **secrets))


def test_sandbox_mode_runs_on_the_localstripe_defaults(database_url: str) -> None:
    app = create_app(Settings(database_url=database_url, sandbox=True))
    assert app.state.services.settings.stripe_webhook_secret == "whsec_localstripe"


def test_a_database_url_is_shown_without_its_password() -> None:
    shown = masked_url("postgresql+asyncpg://licensing:hunter2@db.internal:5432/licensing")
    assert shown == "postgresql+asyncpg://licensing:***@db.internal:5432/licensing"


async def test_migrate_prints_where_the_database_is_but_never_its_password(tmp_path: Path) -> None:
    url = await scratch_database_url(tmp_path)

    done = licensing("migrate", DATABASE_URL=url)

    assert done.returncode == 0, done.stderr
    password = make_url(url).password
    assert done.stdout.strip() == f"database at head: {masked_url(url)}"
    if password:  # PostgreSQL: the URL carries one
        assert f":{password}@" not in done.stdout and ":***@" in done.stdout
