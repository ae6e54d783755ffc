"""Registry of planning algorithms, selectable by name (``--algorithm``).

An algorithm is a function ``(scenario, options) -> PlanResult``.  Baselines
and exact models register themselves here from their own modules.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .plan import PlanResult
from .scenario import Scenario


@dataclass(frozen=True)
class PlanOptions:
    c: int | None = None                       # fix the cache reservation instead of tuning it
    c_objective: str = "lower-bound"
    simulate_requests: int = 0
    seed: int = 1
    time_limit_s: float | None = None
    progress: Callable[[float, str], None] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def deadline(self) -> float | None:
        return None if self.time_limit_s is None else time.monotonic() + self.time_limit_s

    def report(self, fraction: float, message: str) -> None:
        if self.progress is not None:
            self.progress(fraction, message)


AlgorithmFn = Callable[[Scenario, PlanOptions], PlanResult]


@dataclass(frozen=True)
class Algorithm:
    name: str
    description: str
    run: AlgorithmFn
    default: bool = False


REGISTRY: dict[str, Algorithm] = {}


def register(name: str, description: str, default: bool = False) -> Callable[[AlgorithmFn], AlgorithmFn]:
    def wrap(fn: AlgorithmFn) -> AlgorithmFn:
        REGISTRY[name] = Algorithm(name, description, fn, default)
        return fn
    return wrap
