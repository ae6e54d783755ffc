"""Gain judging: how much a re-plan improves on the adopted plan, both judged on today's cluster and load.

Pure: reads no database and writes nothing (the caller passes the plans' documents).
"""

from __future__ import annotations

from typing import Any

from ..planning.models import Plan


def _mean_lower_bound(doc: dict[str, Any], scenario) -> tuple[float | None, list[str]]:
    """Lower bound on the mean response time of a plan's chains, re-timed on ``scenario``'s servers.

    The re-plan chooses ``c`` by this bound (solvers.switching.replan), so it is judged by the same one:
    judging by the upper bound would reject plans for a figure the search never looked at.

    Returns (bound or None when unstable or chainless, the plan's servers missing from the scenario).
    """
    from solvers.bounds import response_time_bounds
    from solvers.topology import make_chain

    index = {s.id: j for j, s in enumerate(scenario.servers)}
    missing = sorted({sid for ch in doc.get("chains") or [] for sid in ch["servers"] if sid not in index})
    if missing or not doc.get("chains"):
        return None, missing
    chains = [make_chain(scenario, [(index[sid], int(m)) for sid, m in zip(ch["servers"], ch["blocks"])],
                         int(ch["capacity"])) for ch in doc["chains"]]
    bounds = response_time_bounds(chains, scenario.workload.arrival_rate)
    return (bounds.lower_s if bounds.stable else None), missing


def replan_gain(current: Plan | None, new_doc: dict[str, Any], scenario) -> dict[str, Any]:
    """Relative gain of ``new_doc`` over the adopted plan, both judged on the current cluster and load.

    ``forced`` is true when the adopted plan cannot stay (none yet, a server gone, overloaded).
    """
    new_mean, _ = _mean_lower_bound(new_doc, scenario)
    out: dict[str, Any] = {"predicted_old_s": None, "predicted_new_s": new_mean, "gain": None, "forced": False}
    if current is None:
        return {**out, "forced": True, "why": "no plan was adopted yet"}
    old_mean, missing = _mean_lower_bound(current.document, scenario)
    out["predicted_old_s"] = old_mean
    if missing:
        return {**out, "forced": True, "why": f"the adopted plan uses servers no longer in the cluster: "
                                              f"{', '.join(missing[:10])}"}
    if old_mean is None:
        return {**out, "forced": True, "why": "the adopted plan is overloaded at the current arrival rate"}
    if new_mean is None:
        return {**out, "why": "the new plan is overloaded at the current arrival rate"}
    gain = (old_mean - new_mean) / old_mean
    return {**out, "gain": gain, "why": f"lower bound on mean response {old_mean:.4g} s -> {new_mean:.4g} s ({gain:+.1%})"}
