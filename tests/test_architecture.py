"""Which way the top-level packages import (docs/architecture.md): a test, so the drawing stays true.

Every import counts, including those inside functions.  Deprecation shims that keep an old import path
working are named here and may point anywhere their new home is.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("solvers", "gpu_probe", "serving", "testbed", "planner_app")

# package -> the other top-level packages it may import
ALLOWED = {
    "solvers": set(),                                  # pure algorithms: the bottom
    "gpu_probe": {"solvers"},                          # the agent: report types and hardware maths
    "serving": {"solvers"},                            # beside a runtime: never Django, never the rig
    "testbed": {"solvers", "serving", "gpu_probe"},    # the measurement rig drives the serving side
    "planner_app": {"solvers", "serving", "gpu_probe"},
}
# old import paths kept working for a while (each warns and re-exports its new home)
SHIMS = {"serving/host.py", "serving/testbed/__init__.py", "serving/testbed/run.py", "serving/testbed/routes.py",
         "serving/testbed/dispatcher.py"}
# modules every side imports, so they must stay free of third-party packages
STDLIB_ONLY = ("solvers/plan_format.py", "solvers/dispatch_policy.py", "solvers/errors.py",
               "serving/dispatch/protocol.py")


def top_level_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def sources(package: str):
    for path in sorted((ROOT / package).rglob("*.py")):
        if "migrations" not in path.parts and "node_modules" not in path.parts:
            yield path


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_point_one_way(package):
    wrong = []
    for path in sources(package):
        rel = path.relative_to(ROOT).as_posix()
        if rel in SHIMS:
            continue
        bad = (top_level_imports(path) & set(PACKAGES)) - ALLOWED[package] - {package}
        if bad:
            wrong.append(f"{rel} imports {', '.join(sorted(bad))}")
    assert not wrong, f"{package} may import only {sorted(ALLOWED[package]) or 'nothing of ours'}: {wrong}"


@pytest.mark.parametrize("rel", STDLIB_ONLY)
def test_shared_contracts_import_only_the_standard_library(rel):
    import sys
    allowed = set(sys.stdlib_module_names) | {"solvers", "__future__"}
    extra = top_level_imports(ROOT / rel) - allowed
    assert not extra, f"{rel} is shared by every side and must import only the standard library, not {extra}"


def test_shims_are_shims():
    """A listed shim holds no logic of its own: it warns and re-exports (so the exemption above stays narrow)."""
    for rel in SHIMS:
        text = (ROOT / rel).read_text()
        assert "DeprecationWarning" in text or rel.endswith("__init__.py"), rel
        tree = ast.parse(text)
        assert not [n for n in tree.body if isinstance(n, (ast.ClassDef, ast.AsyncFunctionDef))], rel
