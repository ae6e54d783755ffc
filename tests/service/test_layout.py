"""planner_app/ is laid out by domain, in layers, without import cycles.

Every import counts, including those inside functions: a lazy import that dodges
a cycle at start-up is still a cycle in the design.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "planner_app"

# Lowest first: a domain may import itself and the domains before it, never one after it.
LAYERS = ["core", "catalog", "planning", "replanning", "probe", "dispatch"]
# The composition root (app registry, URL map, admin, settings, Celery app) sees every domain;
# no domain imports it.
ROOT_MODULES = {"planner_app", "planner_app.models", "planner_app.urls", "planner_app.admin", "planner_app.apps",
                "planner_app.settings", "planner_app.celery", "planner_app.wsgi", "planner_app.asgi"}
# Shared by every Django module; importing it is reading configuration, not depending on a domain.
NEUTRAL = {"planner_app.settings"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def planner_modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")
            if "migrations" not in p.parts and "node_modules" not in p.parts}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """planner_app modules that ``name`` imports anywhere in its source (function bodies included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # "from . import services" imports a module; "from .models import Job" imports .models
            targets = [f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in known else stem for alias in node.names]
        for target in targets:
            while target and target not in known:     # a name inside a module -> the module
                target = target.rpartition(".")[0]
            if target.startswith("planner_app") and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = planner_modules()
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def domain_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_in_planner_app():
    found = cycles(import_graph())
    assert not found, f"import cycles (lazy imports included): {found}"


def test_domains_import_only_lower_layers_and_never_the_composition_root():
    problems = []
    for module, targets in import_graph().items():
        domain = domain_of(module)
        if domain is None:
            continue
        for target in targets:
            if target in ROOT_MODULES and target not in NEUTRAL:
                problems.append(f"{module} imports the composition root {target}")
                continue
            other = domain_of(target)
            if other is not None and LAYERS.index(other) > LAYERS.index(domain):
                problems.append(f"{module} ({domain}) imports {target} ({other}, a higher layer)")
    assert not problems, "\n".join(problems)


EXPECTED = {
    "core": {"errors", "validation", "views", "serializers", "services"},
    "catalog": {"models", "services", "selectors", "serializers", "views"},
    "planning": {"models", "services", "selectors", "serializers", "views", "tasks"},
    "replanning": {"models", "services", "selectors", "serializers", "views", "tasks"},
    "probe": {"models", "services", "serializers", "views"},
}


@pytest.mark.parametrize("domain", sorted(EXPECTED))
def test_each_domain_has_its_modules_and_they_import(domain, db):
    present = {p.stem for p in (PACKAGE / domain).glob("*.py")}
    assert EXPECTED[domain] <= present, f"{domain} lacks {sorted(EXPECTED[domain] - present)}"
    for stem in sorted(present - {"__init__"}):
        importlib.import_module(f"planner_app.{domain}.{stem}")


def test_no_domain_code_left_at_the_top_of_the_package():
    top = {p.stem for p in PACKAGE.glob("*.py")}
    assert top <= {"__init__", "models", "urls", "admin", "apps", "settings", "celery", "wsgi", "asgi"}, top


def test_celery_task_names_are_stable():
    # beat's PeriodicTask rows and queued messages name tasks by these strings
    from planner_app.celery import app
    app.loader.import_default_modules()
    for name in ("planner_app.run_job", "planner_app.sweep_jobs", "planner_app.replan_scheduled",
                 "planner_app.notify_adoption"):
        assert name in app.tasks, name
