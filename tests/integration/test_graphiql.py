"""GraphiQL works offline: its files come from the package, the page allows only 'self', and a real
browser (Debian's Chromium, driven by Playwright) queries and subscribes through it on `make run`'s server."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import Page

from app.devbrowser import CHROMIUM, chromium_page
from app.devstripe import LocalStripe
from app.graphiql import CONTENT_SECURITY_POLICY
from app.graphiql_assets import ASSETS_DIR, MANIFEST, PACKAGES, sri_sha512
from app.http import create_app
from tests.conftest import ON_POSTGRES
from tests.integration.conftest import Api, DemoServer, stripe_settings

HTML = {"Accept": "text/html"}


def test_every_graphiql_file_matches_its_manifest_and_has_its_licence_beside_it() -> None:
    manifest = json.loads((ASSETS_DIR / MANIFEST).read_text())
    for name, entry in manifest["files"].items():
        data = (ASSETS_DIR / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], name
        assert sri_sha512(data) == entry["integrity"], name
    pinned = {f"{package.name}@{package.version}": package for package in PACKAGES}
    assert {f"{p['name']}@{p['version']}" for p in manifest["packages"]} == set(pinned)
    for package in manifest["packages"]:
        assert package["tarball_integrity"] == pinned[f"{package['name']}@{package['version']}"].integrity
        assert "Permission is hereby granted" in (ASSETS_DIR / package["licence"]).read_text()
    listed = set(manifest["files"]) | {p["licence"] for p in manifest["packages"]} | {MANIFEST}
    assert {path.name for path in ASSETS_DIR.iterdir()} == listed


async def test_graphiql_page_loads_only_its_own_integrity_checked_files_under_a_self_only_csp(
    api: Api,
) -> None:
    page = await api.client.get("/graphql", headers=HTML)
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY and "unsafe" not in CONTENT_SECURITY_POLICY
    assert "http://" not in page.text and "https://" not in page.text and "<script>" not in page.text
    integrity = json.loads((ASSETS_DIR / MANIFEST).read_text())["files"]
    for name, entry in integrity.items():
        assert f'"static/graphiql/{name}" integrity="{entry["integrity"]}"' in page.text
        served = await api.client.get(f"/static/graphiql/{name}")
        assert served.status_code == 200 and served.content == (ASSETS_DIR / name).read_bytes()


async def test_graphiql_turned_off_answers_404_and_the_api_still_works(
    database_url: str, localstripe: LocalStripe, catalog: None, staff_token: str
) -> None:
    app = create_app(stripe_settings(database_url, localstripe).replace(graphiql=False))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        page = await client.get("/graphql", headers=HTML)
        assets = await client.get("/static/graphiql/graphiql.min.js")
        answer = await client.post(
            "/graphql",
            json={"query": "{ products { slug } }"},
            headers={"Authorization": f"Bearer {staff_token}"},
        )
    await app.state.services.database.dispose()
    assert page.status_code == 404 and page.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert assets.status_code == 404
    # The API still answers: the catalog (and whatever products other tests of the session added).
    assert answer.status_code == 200
    assert {"slug": "jetpack-complete"} in answer.json()["data"]["products"]


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    """A page in Debian's Chromium, headless, on a fresh profile."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            raise AssertionError(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium package")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    async with chromium_page(tmp_path / "chromium-profile") as opened:
        yield opened


async def type_into(page: Page, editor: str, text: str) -> None:
    """Replace an editor's text as a person would: click in, select all, paste."""
    await page.locator(f"{editor} .CodeMirror").first.click()
    await page.keyboard.press("Control+A")
    await page.keyboard.insert_text(text)


RESULT = 'section[aria-label="Result Window"]'
QUERY = ".graphiql-query-editor"
HEADERS = 'section[aria-label="Headers"] .graphiql-editor:not(.hidden)'


async def result_text(page: Page) -> str:
    text: str = await page.locator(f"{RESULT} .CodeMirror").first.evaluate(
        "node => node.CodeMirror.getValue()"
    )
    return text


async def wait_for_result(page: Page, expected: str) -> str:
    await page.wait_for_function(
        "([selector, expected]) => document.querySelector(selector).CodeMirror.getValue().includes(expected)",
        arg=[f"{RESULT} .CodeMirror", expected],
        timeout=20_000,
    )
    return await result_text(page)


async def wait_for_a_subscriber(base: str, page: Page) -> None:
    """Until the server's metrics count the subscription GraphiQL opened (events before it are not sent)."""
    async with httpx.AsyncClient() as client:
        for _ in range(200):
            metrics = (await client.get(f"{base}/metrics")).text
            if "\nlicensing_subscriptions_waiting 1.0\n" in metrics:
                return
            await page.wait_for_timeout(50)
    raise AssertionError("the subscription never reached the server")


@pytest.mark.skipif(ON_POSTGRES, reason="the demo runs on SQLite; this pass already ran it")
async def test_graphiql_in_chromium_queries_with_the_token_and_shows_a_live_license_event(
    server: DemoServer, page: Page, tmp_path: Path
) -> None:
    partner_token = server.printed_token("partner")
    console: list[str] = []
    origins: set[str] = set()
    page.on("console", lambda message: console.append(message.text))
    page.on("request", lambda request: origins.add(urlsplit(request.url).netloc))
    page.on("websocket", lambda socket: origins.add(urlsplit(socket.url).netloc))

    await page.goto(f"{server.base}/graphql")
    await page.wait_for_selector(f"{QUERY} .CodeMirror")
    hint = page.locator("#token-hint")

    # No token: the page says why the API refuses, and so does the answer.
    await type_into(page, QUERY, "{ viewer { name } }")
    await page.locator(".graphiql-execute-button").click()
    refused = await wait_for_result(page, "UNAUTHENTICATED")
    assert '"data": null' in refused
    assert await hint.is_visible()
    assert "No API token" in await hint.inner_text() and "Headers" in await hint.inner_text()

    # With the demo's token in the Headers tab: data, and the hint goes away.
    await page.get_by_role("button", name="Headers").click()
    await type_into(page, HEADERS, json.dumps({"Authorization": f"Bearer {partner_token}"}))
    await type_into(page, QUERY, "{ viewer { name standing { state } } }")
    await page.locator(".graphiql-execute-button").click()
    answered = json.loads(await wait_for_result(page, "Demo Agency"))
    assert answered == {"data": {"viewer": {"name": "Demo Agency", "standing": {"state": "GOOD"}}}}
    assert not await hint.is_visible()

    # A subscription over the websocket (the header goes as connection_params) shows a live event.
    await type_into(page, QUERY, "subscription { licenseEvents { key action toState } }")
    # GraphiQL re-parses the document after a pause in typing; run before that, it would still send the
    # previous (query) document over HTTP.
    await page.wait_for_timeout(1000)
    await page.locator(".graphiql-execute-button").click()
    await wait_for_a_subscriber(server.base, page)
    issue = """mutation {
      issueLicenses(input: {items: [{productSlug: "jetpack-boost", quantity: 1}]}) { licenses { key } }
    }"""
    async with httpx.AsyncClient() as client:
        issued = await client.post(
            f"{server.base}/graphql",
            json={"query": issue},
            headers={"Authorization": f"Bearer {partner_token}"},
        )
    [key] = [license["key"] for license in issued.json()["data"]["issueLicenses"]["licenses"]]
    event = json.loads(await wait_for_result(page, key))
    assert event == {"data": {"licenseEvents": {"key": key, "action": "issue", "toState": "ISSUED"}}}

    screenshot = tmp_path / "graphiql-subscription.png"
    await page.screenshot(path=str(screenshot))
    assert screenshot.stat().st_size > 20_000  # a rendered page, not a blank one
    if os.environ.get("GRAPHIQL_SCREENSHOT"):  # keep a copy to look at
        shutil.copy(screenshot, os.environ["GRAPHIQL_SCREENSHOT"])
    assert [line for line in console if "Content Security Policy" in line] == []
    assert origins == {urlsplit(server.base).netloc}
