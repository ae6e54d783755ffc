"""Observed load: the arrival rate the runtime reports, and a re-plan when it drifts from the planned one."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from ...catalog.models import Cluster
from ...planning.models import Trigger
from ..selectors import planned_arrival_rate
from .replans import replan_trigger


def observed_load_record(cluster: Cluster, arrival_rate: float, window_s: float | None) -> dict[str, Any]:
    """Store the observed arrival rate; re-plan when it drifts past the threshold from the rate planned for."""
    now = timezone.now()
    Cluster.objects.filter(pk=cluster.pk).update(observed_arrival_rate=arrival_rate, observed_window_s=window_s,
                                                 observed_at=now)
    planned = planned_arrival_rate(cluster)
    drift = abs(arrival_rate - planned) / planned if planned else None
    job = None
    if cluster.adopted_plan_id and drift is not None and drift > cluster.replan_load_threshold:
        job = replan_trigger(cluster.pk, Trigger.LOAD,
                             f"observed arrival rate {arrival_rate:.4g}/s drifted {drift:.0%} from the planned "
                             f"{planned:.4g}/s")
    return {"observed_arrival_rate": arrival_rate, "window_s": window_s, "observed_at": now,
            "planned_arrival_rate": planned, "drift": drift, "threshold": cluster.replan_load_threshold,
            "replan_job": job.pk if job else None}
