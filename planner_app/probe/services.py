"""Write paths of probe reports: tokens, calibrations, and the re-plan a changed figure triggers."""

from __future__ import annotations

import math
from typing import Any

from django.db import transaction

from ..catalog.models import Cluster, Server
from ..planning.models import Trigger
from ..replanning.services import replan_trigger
from .models import ProbeToken, ServerCalibration


def probe_token_create(server: Server):
    """A new token that may only report calibrations for ``server``."""
    return ProbeToken.objects.create(server=server)


def _figures(report: dict[str, Any]) -> dict[str, Any]:
    """The planner's figures (scenario CalibrationDoc fields) from a validated probe report: numbers, and the
    measured batch-slowdown curve where the probe swept batch sizes."""
    derived = report["derived"]
    timing = derived.get("timing") or {}
    candidates = {
        "memory_gb": derived.get("memory_gb"),
        "comm_time_s": derived.get("comm_time_s"),
        "block_time_s": derived.get("block_time_s"),
        "rtt_ms": (report.get("network") or {}).get("rtt_ms"),
        "block_time_base_s": timing.get("block_base_s"),
        "block_time_per_input_token_s": timing.get("block_per_input_token_s"),
        "block_time_per_output_token_s": timing.get("block_per_output_token_s"),
    }
    figures = {k: float(v) for k, v in candidates.items() if isinstance(v, (int, float)) and math.isfinite(v)}
    if figures.get("memory_gb", 1) <= 0:
        figures.pop("memory_gb")      # a device with nothing free: keep the configured memory
    curve = derived.get("batch_slowdown")
    if curve and len(curve) > 1:      # validate_report checked it against the scenario's rules
        figures["batch_slowdown"] = [[int(b), float(f)] for b, f in curve]
    return figures


@transaction.atomic
def calibration_record(server: Server, report: dict[str, Any]):
    """Store a validated probe report and make it the server's latest calibration."""
    model_name = str((report.get("model") or {}).get("name") or "")[:200]
    previous = ServerCalibration.objects.filter(pk=server.latest_calibration_id).first()
    before = _effective_figures(server, previous.figures if previous else None)
    calibration = ServerCalibration.objects.create(server=server, model_name=model_name,
                                                   figures=_figures(report), report=report)
    Server.objects.filter(pk=server.pk).update(latest_calibration=calibration)
    _calibration_trigger(server, before, _effective_figures(server, calibration.figures),
                         _curve_change(previous.figures if previous else None, calibration.figures))
    return calibration


def _curve_change(before: dict[str, Any] | None, after: dict[str, Any]) -> tuple[float, str] | None:
    """The largest relative change of the measured batch slowdown at the new curve's points, with a note."""
    from solvers.batching import NO_SLOWDOWN, BatchSlowdown
    new = after.get("batch_slowdown")
    if not new:
        return None
    old = BatchSlowdown.from_pairs(before["batch_slowdown"]) if before and before.get("batch_slowdown") \
        else NO_SLOWDOWN
    worst = max(((abs(f - old.factor(b)) / old.factor(b), b, old.factor(b), f) for b, f in new), default=None)
    if worst is None:
        return None
    change, b, was, now = worst
    return change, f"batch slowdown at {b} jobs {was:.3g}x -> {now:.3g}x ({(now - was) / was:+.0%})"


TRIGGER_FIGURES = ("memory_gb", "comm_time_s", "block_time_s")


def _effective_figures(server: Server, calibration: dict[str, Any] | None) -> dict[str, float]:
    """The figures the planner uses for a server: its measured ones over the configured ones."""
    figures = {k: getattr(server, k) for k in TRIGGER_FIGURES if getattr(server, k) is not None}
    figures.update({k: v for k, v in (calibration or {}).items() if k in TRIGGER_FIGURES})
    return figures


def _calibration_trigger(server: Server, before: dict[str, float], after: dict[str, float],
                         curve: tuple[float, str] | None = None) -> None:
    cluster = Cluster.objects.filter(pk=server.cluster_id).only("pk", "adopted_plan", "replan_calibration_threshold").first()
    if cluster is None or cluster.adopted_plan_id is None:
        return      # nothing adopted: nothing to keep good
    changes = []
    for key in TRIGGER_FIGURES:
        old, new = before.get(key), after.get(key)
        if old and new is not None and abs(new - old) / abs(old) > cluster.replan_calibration_threshold:
            changes.append(f"{key} {old:.4g} -> {new:.4g} ({(new - old) / old:+.0%})")
    if curve is not None and curve[0] > cluster.replan_calibration_threshold:
        changes.append(curve[1])
    if changes:
        replan_trigger(cluster.pk, Trigger.CALIBRATION,
                       f"new calibration of server {server.server_id}: " + ", ".join(changes))
