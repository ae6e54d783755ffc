"""The runner of re-plan jobs: planning executes a job with a ``trigger`` through it.

Planning does not import re-planning; ``PlannerAppConfig.ready`` registers ``REPLAN_RUNNER``
with ``planning.services.register_replan_runner``.
"""

from __future__ import annotations

from typing import Any

from ...planning.models import Job, Plan
from ...planning.services import ReplanRunner
from .adoption import replan_decide


def replan_compute(job: Job, scenario, progress, time_limit_s: float | None) -> dict[str, Any]:
    from solvers.algorithms import PlanOptions
    from solvers.switching import replan

    previous = Plan.objects.filter(pk=job.previous_plan_id).values_list("document", flat=True).first()
    opts = job.options
    options = PlanOptions(simulate_requests=int(opts.get("simulate_requests", 0)), seed=int(opts.get("seed", 1)),
                          progress=progress, time_limit_s=time_limit_s)
    doc = replan(scenario, previous, float(opts.get("delta", 0.0)), options)
    progress.report(1.0, "proposed: done", force=True)
    return doc


REPLAN_RUNNER = ReplanRunner(compute=replan_compute, decide=replan_decide)
