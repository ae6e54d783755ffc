"""chainplan solvers: server chain composition for pipeline-parallel model serving.

Framework-free (no Django).  Entry points:

- ``parse_scenario`` / ``load_scenario``: validated scenario model
- ``solvers.runner.plan``: run one algorithm on a scenario, returning the plan document
- ``solvers.plan_format``: the plan document, typed (standard library only)
- ``python -m solvers``: command line

The names below load on first use (PEP 562), so that importing one light submodule
(``solvers.plan_format``, ``solvers.errors``) does not pull in numpy and pydantic.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .errors import FieldError, ScenarioError
    from .scenario import Scenario, load_scenario, parse_scenario

_LAZY = {"FieldError": "errors", "ScenarioError": "errors", "Scenario": "scenario",
         "load_scenario": "scenario", "parse_scenario": "scenario"}
# submodules that ``import solvers`` used to load as a side effect, so ``solvers.scenario`` keeps working
_SUBMODULES = ("errors", "scenario")

__all__ = ["FieldError", "ScenarioError", "Scenario", "load_scenario", "parse_scenario"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
