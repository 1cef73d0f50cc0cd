"""GraphiQL's browser files, pinned: fetched from the npm registry by `make graphiql-assets`.

The files are committed under app/static/graphiql/ (about 4 MB, minified dist files only) so that a
fresh clone serves GraphiQL offline with no extra step. Each npm tarball must match the integrity pinned
here before anything is copied; `manifest.json` records every copied file's sha256 and its
Subresource-Integrity hash (sha512), which the page puts on its <script> and <link> tags and a test
checks against the files. Each package's licence is kept beside its files.

    python -m app.graphiql_assets [--into DIR]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent / "static" / "graphiql"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class NpmPackage:
    """One pinned npm package and what the page takes from it (path in the tarball → served name)."""

    name: str
    version: str
    # The registry's sha512 of the tarball (`npm view <name>@<version> dist.integrity`).
    integrity: str
    files: dict[str, str] = field(default_factory=dict)
    # The licence is copied beside the files as `licence_as`.
    licence_as: str = ""
    licence: str = "package/LICENSE"

    @property
    def spec(self) -> str:
        return f"{self.name}@{self.version}"


# The versions Strawberry's own GraphiQL page loads from a CDN (strawberry/static/graphiql.html).
# js-cookie is left out: that page reads Django's CSRF cookie with it, and this API uses bearer tokens.
PACKAGES = (
    NpmPackage(
        "react",
        "18.2.0",
        "sha512-/3IjMdb2L9QbBdWiW5e3P2/npwMBaU9mHCSCUzNln0ZCYbcfTsGbTJrU/kGemdH2IWmB2ioZ+zkxtmq6g09fGQ==",
        {"package/umd/react.production.min.js": "react.production.min.js"},
        licence_as="react.LICENSE",
    ),
    NpmPackage(
        "react-dom",
        "18.2.0",
        "sha512-6IMTriUmvsjHUjNtEDudZfuDQUoWXVxKHhlEGSk81n4YFS+r/Kl99wXiwlVXtPBtJenozv2P+hxDsw9eA7Xo6g==",
        {"package/umd/react-dom.production.min.js": "react-dom.production.min.js"},
        licence_as="react-dom.LICENSE",
    ),
    NpmPackage(
        "graphiql",
        "3.8.3",
        "sha512-cuPDYtXVKV86Pu5PHBX642Odi/uVEE2y1Jxq5rGO/Qy1G2lRp7ZZ7a/T30RzxhuLSWo9zUbzq0P3U49//H0Ugw==",
        {"package/graphiql.min.js": "graphiql.min.js", "package/graphiql.min.css": "graphiql.min.css"},
        licence_as="graphiql.LICENSE",
    ),
    # The explorer plugin ships no LICENSE file; it is MIT (package.json) from the graphql/graphiql
    # repository, whose LICENSE graphiql's tarball carries, so that text is kept for it.
    NpmPackage(
        "@graphiql/plugin-explorer",
        "1.0.2",
        "sha512-9j+kg2UjtLZD5EBmGjeWHkoVVxtbShYg2DzbUVebibnZYZM/iMBEF4vaccXJIAm5KaomIPLx0aoNs4LbODyc3Q==",
        {
            "package/dist/index.umd.js": "plugin-explorer.umd.js",
            "package/dist/style.css": "plugin-explorer.css",
        },
        licence_as="plugin-explorer.LICENSE",
    ),
    # Bundled inside plugin-explorer.umd.js; fetched for its licence only.
    NpmPackage(
        "graphiql-explorer",
        "0.9.0",
        "sha512-fZC/wsuatqiQDO2otchxriFO0LaWIo/ovF/CQJ1yOudmY0P7pzDiP+l9CEHUiWbizk3e99x6DQG4XG1VxA+d6A==",
        licence_as="graphiql-explorer.LICENSE",
    ),
)
# Whose licence text a package without one borrows (same repository).
LICENCE_FROM = {"@graphiql/plugin-explorer": "graphiql"}


def sri_sha512(data: bytes) -> str:
    """A Subresource-Integrity value: what a browser checks an `integrity` attribute against."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def npm_pack(package: NpmPackage, into: Path) -> Path:
    """Download the package's tarball with npm and refuse it unless it matches the pinned integrity."""
    done = subprocess.run(
        ["npm", "pack", package.spec, "--json", "--pack-destination", str(into)],
        capture_output=True,
        text=True,
        check=True,
    )
    [packed] = json.loads(done.stdout)
    tarball = into / packed["filename"]
    actual = sri_sha512(tarball.read_bytes())
    if actual != package.integrity:
        raise SystemExit(f"{package.spec}: tarball integrity {actual} is not the pinned {package.integrity}")
    return tarball


def member_bytes(tarball: Path, member: str) -> bytes:
    with tarfile.open(tarball) as archive:
        extracted = archive.extractfile(member)
        if extracted is None:
            raise SystemExit(f"{tarball.name}: {member} is not a file")
        return extracted.read()


def fetch(into: Path) -> dict[str, object]:
    """Fetch every pinned package, copy its files and licence into `into`, and write the manifest."""
    staging = into.with_name(into.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    files: dict[str, dict[str, str]] = {}
    packages = []
    with tempfile.TemporaryDirectory() as scratch:
        tarballs = {package.name: npm_pack(package, Path(scratch)) for package in PACKAGES}
        for package in PACKAGES:
            tarball = tarballs[package.name]
            for source, served in package.files.items():
                data = member_bytes(tarball, source)
                (staging / served).write_bytes(data)
                files[served] = {
                    "package": package.spec,
                    "source": source.removeprefix("package/"),
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "integrity": sri_sha512(data),
                }
            licensed_by = tarballs[LICENCE_FROM.get(package.name, package.name)]
            (staging / package.licence_as).write_bytes(member_bytes(licensed_by, package.licence))
            packages.append(
                {
                    "name": package.name,
                    "version": package.version,
                    "tarball_integrity": package.integrity,
                    "files": sorted(package.files.values()),
                    "licence": package.licence_as,
                }
            )
    manifest: dict[str, object] = {"packages": packages, "files": files}
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    shutil.rmtree(into, ignore_errors=True)
    staging.rename(into)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--into", type=Path, default=ASSETS_DIR)
    args = parser.parse_args()
    manifest = fetch(args.into)
    for package in manifest["packages"]:  # type: ignore[attr-defined]
        print(f"{package['name']}@{package['version']}: {', '.join(package['files']) or '(licence only)'}")
    print(f"wrote {args.into / MANIFEST}")


if __name__ == "__main__":
    main()
