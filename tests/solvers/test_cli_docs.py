"""The documentation a user reads: its examples run, and it stands alone in the repository."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def json_blocks(path: Path) -> list[str]:
    return re.findall(r"```json\n(.*?)```", path.read_text(), re.S)


SCENARIOS = [(p.name, i, b) for p in sorted(DOCS.glob("*.md")) for i, b in enumerate(json_blocks(p))
             if '"servers"' in b and '"workload"' in b]


def test_the_scenario_format_has_examples():
    assert sum(1 for name, _, _ in SCENARIOS if name == "scenario-format.md") >= 4


@pytest.mark.parametrize("name,index,block", SCENARIOS, ids=[f"{n}#{i}" for n, i, _ in SCENARIOS])
def test_every_scenario_example_in_docs_is_valid(name, index, block):
    res = subprocess.run([sys.executable, "-m", "solvers", "validate", "-"], cwd=ROOT, input=block,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, f"{name} example {index}: {res.stderr}"
    resolved = json.loads(res.stdout)
    assert resolved["model"]["num_blocks"] >= 1


def test_docs_stand_alone():
    """Nothing a user reads points outside the repository."""
    paths = [*DOCS.glob("*.md"), ROOT / "README.md", ROOT / "solvers" / "cli.py", ROOT / "frontend" / "src" / "types.ts"]
    for path in paths:
        text = path.read_text()
        assert "shared/spec" not in text and "../shared" not in text, path


def test_docs_links_resolve():
    """Every relative markdown link in docs/ and the README names a file that exists."""
    for path in [*DOCS.glob("*.md"), ROOT / "README.md"]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", path.read_text()):
            if "://" in target:
                continue
            assert (path.parent / target).exists(), f"{path.name}: broken link {target}"


def test_docs_index_lists_every_document():
    index = (DOCS / "README.md").read_text()
    for path in DOCS.glob("*.md"):
        if path.name != "README.md":
            assert f"({path.name})" in index, path.name
