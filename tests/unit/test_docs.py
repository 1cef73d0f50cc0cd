"""The repository stands alone: nothing points outside it, and every docs/ page the code cites exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE = re.compile(r"\.\./shared|DESIGN\.md|DESIGN §")
# `docs/page.md` optionally followed by a quoted section heading: (docs/rules.md, "The day rule").
CITATION = re.compile(r'docs/([a-z_-]+\.md)(?:, "([^"]+)")?')


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    suffixes = {".py", ".md", ".toml", ".cfg", ".ini", ".graphql", ".txt", ""}
    paths = [ROOT / line for line in listed.stdout.splitlines() if Path(line).suffix in suffixes]
    return [path for path in paths if path.is_file() and path.name != "test_docs.py"]


def test_no_file_refers_outside_the_repository() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in tracked_text_files()
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert offenders == []


def test_every_cited_docs_page_and_section_exists() -> None:
    missing = []
    for path in tracked_text_files():
        for page, section in CITATION.findall(path.read_text(errors="replace")):
            target = ROOT / "docs" / page
            if not target.exists():
                missing.append(f"{path.relative_to(ROOT)} cites docs/{page}")
            elif section and not re.search(rf"^#+ {re.escape(section)}$", target.read_text(), re.M):
                missing.append(f'{path.relative_to(ROOT)} cites docs/{page}, "{section}"')
    assert missing == []
