"""README.md shows the state machines as they are in the code."""

from __future__ import annotations

from pathlib import Path

from app.cli import main
from app.diagrams import README, START, with_diagrams


def test_readme_diagrams_match_the_state_machines() -> None:
    text = README.read_text()
    assert text == with_diagrams(text), "README.md diagrams are stale: run `licensing diagrams`"


def test_the_command_writes_the_block_once_and_reports_it_current(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# project\n")
    assert main(["diagrams", "--readme", str(readme)]) == 0
    written = readme.read_text()
    assert (
        written.count(START) == 1
        and "stateDiagram-v2" in written
        and "assigned --> issued : Unassign" in written
    )
    assert main(["diagrams", "--readme", str(readme)]) == 0
    assert readme.read_text() == written
    assert main(["diagrams", "--readme", str(readme), "--check"]) == 0
    readme.write_text(written.replace("Unassign", "Unplug"))
    assert main(["diagrams", "--readme", str(readme), "--check"]) == 1
