"""planner_app/ is laid out by domain, in layers, without import cycles.

Every import counts, including those inside functions: a lazy import that dodges
a cycle at start-up is still a cycle in the design.
"""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "planner_app"

# Lowest first: a domain may import itself and the domains before it, never one after it.
LAYERS = ["core", "catalog", "planning", "replanning", "probe", "dispatch", "liveness", "gateway"]
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
    "gateway": {"models", "services", "selectors", "serializers", "views"},
    "liveness": {"models", "services", "selectors", "serializers", "views"},
}


# Old import paths kept as deprecation shims: old -> new.
SHIMS = {"planner_app.replanning.imports": "planner_app.replanning.ingest"}


@pytest.mark.parametrize("domain", sorted(EXPECTED))
def test_each_domain_has_its_modules_and_they_import(domain, db):
    # a module or, once it outgrew one file, a package of them (replanning/services/)
    present = ({p.stem for p in (PACKAGE / domain).glob("*.py")}
               | {p.parent.name for p in (PACKAGE / domain).glob("*/__init__.py")})
    assert EXPECTED[domain] <= present, f"{domain} lacks {sorted(EXPECTED[domain] - present)}"
    for name in sorted(planner_modules()):
        if name.startswith(f"planner_app.{domain}.") and name not in SHIMS:
            importlib.import_module(name)


def test_every_module_imports_in_a_fresh_interpreter_and_the_replan_runner_is_wired():
    """No import-order luck: Django starts, then every planner_app module imports, in a new process.

    The re-plan runner is registered by PlannerAppConfig.ready itself, not as a side effect of some
    module that happens to be imported.
    """
    code = """
import importlib, sys, warnings
import django
django.setup()
from planner_app.planning import services as planning_services
from planner_app.replanning.services import REPLAN_RUNNER
assert planning_services._runner() is REPLAN_RUNNER, "AppConfig.ready did not register the re-plan runner"
from planner_app.replanning.services import replans
from planner_app.liveness.selectors import unavailable_servers
assert replans._unavailable is unavailable_servers, "AppConfig.ready did not register the liveness provider"
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)     # the shims warn by design
    for name in sys.argv[1:]:
        importlib.import_module(name)
print("ok")
"""
    names = sorted(planner_modules())
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "planner_app.settings"}
    out = subprocess.run([sys.executable, "-c", code, *names], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stdout + out.stderr


@pytest.mark.parametrize("old,new", sorted(SHIMS.items()))
def test_old_import_paths_still_work_and_warn(old, new):
    code = f"""
import warnings
import django
django.setup()
import {new} as new
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import {old} as old
assert any(issubclass(w.category, DeprecationWarning) and "{new}" in str(w.message) for w in caught), caught
public = [n for n in vars(new) if not n.startswith("_") and getattr(new, n).__class__.__name__ != "module"]
missing = [n for n in public if getattr(old, n, None) is not getattr(new, n)]
assert not missing, missing
print("ok")
"""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "planner_app.settings"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stdout + out.stderr


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
