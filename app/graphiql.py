"""GraphiQL served offline: our own page, its pinned files from the package, a strict CSP.

GET /graphql from a browser (Accept: text/html) answers the page; the page loads React, GraphiQL and the
explorer plugin from /static/graphiql/ (fetched by `make graphiql-assets`, see app/graphiql_assets.py),
each with its Subresource-Integrity hash from the manifest, then app/static/graphiql-page.js starts it.
Nothing comes from another origin, so the Content-Security-Policy allows only 'self' (plus `data:` images
and fonts: GraphiQL's stylesheet embeds its icons and fonts as data URLs; no inline script or style).
`LICENSING_GRAPHIQL=0` turns the page and its files off (404); the API is unaffected.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from app.graphiql_assets import ASSETS_DIR, MANIFEST

STATIC_DIR = Path(__file__).resolve().parent / "static"
STYLESHEETS = ("graphiql.min.css", "plugin-explorer.css")
# In load order: the explorer plugin reads the React and GraphiQL globals the earlier files define.
SCRIPTS = (
    "react.production.min.js",
    "react-dom.production.min.js",
    "graphiql.min.js",
    "plugin-explorer.umd.js",
)

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        # 'self' covers the page's own ws:/wss: origin too (CSP level 3): subscriptions.
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

TOKEN_HINT = (
    "No API token: GraphiQL sends no <code>Authorization</code> header, so the API answers "
    "<code>UNAUTHENTICATED</code>. Open the <b>Headers</b> tab below and paste "
    '<code>{"Authorization": "Bearer &lt;token&gt;"}</code> (<code>make run</code> prints a demo token).'
)


def asset_integrity() -> dict[str, str]:
    """Served file name → its SRI hash, as recorded by `make graphiql-assets`."""
    manifest = json.loads((ASSETS_DIR / MANIFEST).read_text())
    return {name: entry["integrity"] for name, entry in manifest["files"].items()}


def page_html() -> str:
    """The page: relative URLs (it works under a path prefix), every vendor file integrity-checked."""
    integrity = asset_integrity()

    def vendor(name: str) -> str:
        return f'href="static/graphiql/{name}" integrity="{escape(integrity[name])}"'

    styles = "\n".join(f'    <link rel="stylesheet" {vendor(name)} />' for name in STYLESHEETS)
    scripts = "\n".join(
        f"    <script {vendor(name).replace('href=', 'src=', 1)}></script>" for name in SCRIPTS
    )
    return f"""<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <title>partner-licensing · GraphiQL</title>
    <link rel="icon" href="data:," />
{styles}
    <link rel="stylesheet" href="static/graphiql-page.css" />
  </head>
  <body>
    <div id="token-hint" class="licensing-hint" role="status">{TOKEN_HINT}</div>
    <div id="graphiql">Loading…</div>
{scripts}
    <script src="static/graphiql-page.js"></script>
  </body>
</html>
"""


class GraphiQLPage:
    """The rendered page (built once) and the route serving its files."""

    def __init__(self) -> None:
        self.html = page_html()

    def response(self) -> HTMLResponse:
        return HTMLResponse(self.html, headers=PAGE_HEADERS)

    @staticmethod
    def routes() -> list[BaseRoute]:
        return [Mount("/static", StaticFiles(directory=STATIC_DIR), name="static")]
