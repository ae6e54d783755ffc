"""Gain judging: how much a re-plan improves on the adopted plan, both judged on today's cluster and load.

Pure: reads no database and writes nothing (the caller passes the plans' documents); the maths is the solvers'
(``solvers.switching.retimed_lower_bound``), the same bound the re-plan chooses ``c`` by.
"""

from __future__ import annotations

from typing import Any

from solvers.switching import retimed_lower_bound

from ..planning.models import Plan


def replan_gain(current: Plan | None, new_doc: dict[str, Any], scenario) -> dict[str, Any]:
    """Relative gain of ``new_doc`` over the adopted plan, both judged on the current cluster and load.

    ``forced`` is true when the adopted plan cannot stay (none yet, a server gone, overloaded).
    """
    new_mean, _ = retimed_lower_bound(scenario, new_doc)
    out: dict[str, Any] = {"predicted_old_s": None, "predicted_new_s": new_mean, "gain": None, "forced": False}
    if current is None:
        return {**out, "forced": True, "why": "no plan was adopted yet"}
    old_mean, missing = retimed_lower_bound(scenario, current.document)
    out["predicted_old_s"] = old_mean
    if missing:
        return {**out, "forced": True, "why": f"the adopted plan uses servers no longer in the cluster or left out "
                                              f"of this re-plan (down or draining): "
                                              f"{', '.join(missing[:10])}"}
    if old_mean is None:
        return {**out, "forced": True, "why": "the adopted plan is overloaded at the current arrival rate"}
    if new_mean is None:
        return {**out, "why": "the new plan is overloaded at the current arrival rate"}
    gain = (old_mean - new_mean) / old_mean
    return {**out, "gain": gain, "why": f"lower bound on mean response {old_mean:.4g} s -> {new_mean:.4g} s ({gain:+.1%})"}
