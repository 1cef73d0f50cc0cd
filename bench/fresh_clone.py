"""How long a new user waits: `git clone` this repository, `make run`, until GraphiQL renders in Chromium.

Clones the committed HEAD into a temporary folder and runs `make run` there on free ports (it creates
.venv from requirements.lock, starts localstripe, seeds the demo, serves), then prints the time to each
milestone: the clone, the venv ready, /healthz answering, and GraphiQL's editor drawn by Debian's
Chromium (/usr/bin/chromium, driven by Playwright). pip's download cache is used if the machine has one
(say which in the report: a cold cache adds the downloads). Everything it started is stopped at the end.

    .venv/bin/python bench/fresh_clone.py
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from app.devbrowser import chromium_page
from app.devstripe import free_port

ROOT = Path(__file__).resolve().parents[1]


async def graphiql_rendered(url: str, profile: Path) -> None:
    async with chromium_page(profile) as page:
        await page.goto(url)
        await page.wait_for_selector(".graphiql-query-editor .CodeMirror", timeout=60_000)


def main() -> None:
    started = time.perf_counter()
    marks: list[tuple[str, float]] = []

    def mark(name: str) -> None:
        marks.append((name, time.perf_counter() - started))

    with tempfile.TemporaryDirectory() as scratch:
        clone = Path(scratch) / "clone"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        mark("git clone")
        port, stripe_port = free_port(), free_port()
        env = {
            key: value for key, value in os.environ.items() if not key.startswith(("DATABASE_URL", "STRIPE_"))
        }
        env["LICENSING_LOG_LEVEL"] = "warning"
        with (Path(scratch) / "make-run.log").open("wb") as log:
            make = subprocess.Popen(
                ["make", "run", f"PORT={port}", f"STRIPE_PORT={stripe_port}"],
                cwd=clone,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as a whole below
            )
        try:
            venv_marked = False
            deadline = time.perf_counter() + 900
            while time.perf_counter() < deadline:
                if make.poll() is not None:
                    raise SystemExit(f"make run exited:\n{(Path(scratch) / 'make-run.log').read_text()}")
                if not venv_marked and (clone / ".venv" / "bin" / "licensing").exists():
                    mark(".venv installed")
                    venv_marked = True
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            else:
                raise SystemExit("make run did not serve within 15 minutes")
            mark("demo seeded, /healthz answers")
            asyncio.run(graphiql_rendered(f"http://127.0.0.1:{port}/graphql", Path(scratch) / "profile"))
            mark("GraphiQL rendered in Chromium")
        finally:
            os.killpg(make.pid, signal.SIGTERM)
            make.wait(timeout=30)
    print("fresh clone → `make run` → GraphiQL rendered (seconds since the clone started):")
    for name, seconds in marks:
        print(f"  {name:32} {seconds:7.1f}")


if __name__ == "__main__":
    main()
