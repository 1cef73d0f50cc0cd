"""Settings: one model, defaults written once, every bad variable named at once (app/settings.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from app.settings import BadSettings, Settings, variable_of
from domain.support import SupportContact
from schema.limits import QueryLimits

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment with none of the service's variables set (whatever the engineer's shell has)."""
    for name in Settings.model_fields:
        monkeypatch.delenv(variable_of(name), raising=False)
    return monkeypatch


def test_an_empty_environment_gives_the_defaults_the_model_declares(environ: pytest.MonkeyPatch) -> None:
    assert Settings.from_env() == Settings()
    defaults = Settings()
    assert defaults.query_limits == QueryLimits()
    assert defaults.collection_policy().retry_days == (3, 7, 14)
    assert defaults.support.email == "partners@example.com"


def test_every_variable_is_read_into_its_attribute(environ: pytest.MonkeyPatch) -> None:
    for variable, value in {
        "DATABASE_URL": "postgresql+asyncpg://licensing:pw@db:5432/licensing",
        "LICENSING_SANDBOX": "yes",
        "LICENSING_SANDBOX_START": "2026-07-01T11:00:00+02:00",
        "LICENSING_MAX_QUERY_DEPTH": "4",
        "LICENSING_MAX_QUERY_FIELDS": "50",
        "LICENSING_REQUEST_TIMEOUT_SECONDS": "2.5",
        "LICENSING_WEBSOCKET_ORIGINS": "https://portal.example.com, *",
        "LICENSING_CORS_ORIGINS": "https://Portal.Example.com:443,http://localhost:3000",
        "LICENSING_GRAPHIQL": "0",
        "LICENSING_LOG_FORMAT": "TEXT",
        "LICENSING_LICENSE_CHECKS_PER_ADDRESS": "10/second",
        "LICENSING_DUNNING_RETRY_DAYS": "2, 9",
        "LICENSING_SUPPORT_EMAIL": "help@agency.example",
        "LICENSING_OTEL_TRACING": "on",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
    }.items():
        environ.setenv(variable, value)
    settings = Settings.from_env()
    assert settings.database_url.startswith("postgresql+asyncpg://")
    assert settings.sandbox is True
    assert settings.sandbox_start == datetime(2026, 7, 1, 9, 0, tzinfo=UTC)
    assert (settings.query_limits.max_depth, settings.query_limits.max_fields) == (4, 50)
    assert settings.query_limits.max_operations == QueryLimits.max_operations  # not a setting
    assert settings.request_timeout_seconds == 2.5
    assert settings.websocket_origins == ("https://portal.example.com", "*")
    # As browsers send an Origin (CORS compares the header with these exactly).
    assert settings.cors_origins == ("https://portal.example.com", "http://localhost:3000")
    assert settings.graphiql is False and settings.otel_tracing is True
    assert settings.log_format == "text"
    assert settings.license_checks_per_address == "10/second"
    assert settings.collection_policy().retry_days == (2, 9)
    assert settings.support.email == "help@agency.example"
    assert settings.otlp_endpoint == "http://collector:4318"


def test_an_empty_variable_is_the_default(environ: pytest.MonkeyPatch) -> None:
    environ.setenv("LICENSING_SANDBOX_START", "")
    environ.setenv("LICENSING_MAX_BODY_BYTES", "")
    settings = Settings.from_env()
    assert settings.sandbox_start is None and settings.max_body_bytes == Settings().max_body_bytes


def test_every_bad_variable_is_listed_at_once_with_its_value(environ: pytest.MonkeyPatch) -> None:
    environ.setenv("LICENSING_MAX_BODY_BYTES", "lots")
    environ.setenv("LICENSING_SANDBOX", "maybe")
    environ.setenv(
        "LICENSING_CORS_ORIGINS", "portal.example.com,https://ok.example.com,https://x.example/app/"
    )
    environ.setenv("LICENSING_LOG_LEVEL", "verbose")
    environ.setenv("LICENSING_DUNNING_RETRY_DAYS", "3,x")
    environ.setenv("LICENSING_REQUEST_TIMEOUT_SECONDS", "0")
    environ.setenv("LICENSING_SANDBOX_START", "2026-07-01T09:00")
    environ.setenv("LICENSING_LICENSE_CHECKS_OVERALL", "fast")
    environ.setenv("STRIPE_API_BASE", "127.0.0.1:8420")

    with pytest.raises(BadSettings) as refused:
        Settings.from_env()

    problems = refused.value.problems
    assert problems == [
        "LICENSING_SANDBOX='maybe': expected 1 or 0 (also true/false, yes/no, on/off)",
        "LICENSING_SANDBOX_START='2026-07-01T09:00': expected an instant with its offset, "
        "like 2026-07-01T09:00:00+00:00",
        "LICENSING_MAX_BODY_BYTES='lots': expected a whole number",
        "LICENSING_REQUEST_TIMEOUT_SECONDS='0': Input should be greater than 0",
        "LICENSING_CORS_ORIGINS='portal.example.com,https://ok.example.com,https://x.example/app/': "
        "'portal.example.com' is not an origin (scheme://host[:port], like https://portal.example.com; "
        "did you mean https://portal.example.com?); 'https://x.example/app/' is not an origin: only "
        "scheme://host[:port], like https://portal.example.com, nothing after it "
        "(did you mean https://x.example?)",
        "LICENSING_LOG_LEVEL='verbose': expected one of debug, info, warning, error",
        "LICENSING_LICENSE_CHECKS_OVERALL='fast': expected a rate like 60/minute or 2000/second",
        "STRIPE_API_BASE='127.0.0.1:8420': expected an http:// or https:// URL",
        "LICENSING_DUNNING_RETRY_DAYS='3,x': item 2: expected a whole number",
    ]
    assert str(refused.value).startswith("9 bad settings:\n  LICENSING_SANDBOX='maybe'")


def test_a_secret_is_never_echoed(environ: pytest.MonkeyPatch) -> None:
    environ.setenv("DATABASE_URL", "mysql://licensing:hunter2@db/licensing")
    with pytest.raises(BadSettings) as refused:
        Settings.from_env()
    assert str(refused.value) == (
        "bad setting: DATABASE_URL: driver 'mysql': expected one of sqlite+aiosqlite, postgresql+asyncpg"
    )
    assert "hunter2" not in repr(
        Settings(database_url="sqlite+aiosqlite:///x.db", stripe_api_key="sk_live_1")
    )
    assert "sk_live_1" not in repr(Settings(stripe_api_key="sk_live_1"))


def test_retry_days_must_increase(environ: pytest.MonkeyPatch) -> None:
    environ.setenv("LICENSING_DUNNING_RETRY_DAYS", "7,3")
    with pytest.raises(BadSettings, match="LICENSING_DUNNING_RETRY_DAYS='7,3': expected positive days"):
        Settings.from_env()


def test_settings_built_in_code_read_no_environment(environ: pytest.MonkeyPatch) -> None:
    environ.setenv("LICENSING_SANDBOX", "1")
    environ.setenv("LICENSING_MAX_BODY_BYTES", "not even a number")
    assert Settings().sandbox is False
    assert Settings(max_body_bytes=10).max_body_bytes == 10


def test_groups_and_copies_are_checked_like_the_environment() -> None:
    support = SupportContact(message="Ask us.", email="a@b.example", url="https://b.example")
    settings = Settings(query_limits=QueryLimits(max_depth=0, max_fields=7), support=support)
    assert settings.query_limits == QueryLimits(max_depth=0, max_fields=7)
    assert settings.support == support
    changed = settings.replace(cors_origins=("https://portal.example.com/",), metrics=False)
    assert changed.cors_origins == ("https://portal.example.com",) and changed.metrics is False
    assert changed.support == support and settings.metrics is True
    with pytest.raises(ValueError, match="not an origin"):
        settings.replace(cors_origins=("portal",))
    with pytest.raises(ValueError, match="Extra inputs are not permitted"):
        Settings(no_such_setting=1)


def test_the_readme_documents_every_variable() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Settings (environment)", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    assert {variable_of(name) for name in Settings.model_fields} - documented == set()
