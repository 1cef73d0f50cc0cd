"""A development tool: Debian's Chromium, headless, driven by Playwright (the dev extras).

The GraphiQL browser test and `bench/fresh_clone.py` use it. Playwright downloads no browser here: it
drives /usr/bin/chromium (`apt-get install chromium`; `.ci/run` installs it). Nothing in the service's
runtime imports this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.async_api import Page

CHROMIUM = "/usr/bin/chromium"
# No GPU, no network but the pages it is sent to, no first-run or update traffic.
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.asynccontextmanager
async def chromium_page(profile: Path) -> AsyncIterator[Page]:
    """A page in a headless Chromium on a fresh profile folder (`--user-data-dir`), closed afterwards."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            args=FLAGS,
            headless=True,
            viewport={"width": 1400, "height": 900},
        )
        try:
            yield context.pages[0] if context.pages else await context.new_page()
        finally:
            await context.close()
