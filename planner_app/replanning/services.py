"""Write paths of re-planning (README "Re-planning"): re-plan jobs, adoption, webhooks, observed load, schedules."""

from __future__ import annotations

import json
import logging
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..catalog.models import Cluster, Server
from ..catalog.selectors import cluster_scenario_document
from ..core.errors import Conflict
from ..core.validation import parse_scenario_document
from ..planning.models import Job, JobStatus, Plan, Trigger
from ..planning.services import ReplanRunner, job_create, register_replan_runner
from .models import PlanAdoption, ReplanSchedule
from .selectors import planned_arrival_rate, schedule_description

log = logging.getLogger("planner_app.replanning")

# Registered task names (tasks.py); beat's PeriodicTask rows store REPLAN_SCHEDULED.
REPLAN_SCHEDULED = "planner_app.replan_scheduled"
NOTIFY_ADOPTION = "planner_app.notify_adoption"


class ReplanRefused(Exception):
    """The cluster cannot be re-planned as it stands (no model, no servers, no workload, invalid figures)."""


def replan_workload(cluster: Cluster) -> dict[str, Any] | None:
    """The cluster's default workload, with the observed arrival rate when the service was told one."""
    workload = dict(cluster.default_workload or {})
    if cluster.observed_arrival_rate:
        workload["arrival_rate"] = cluster.observed_arrival_rate
        workload.pop("trace", None)      # a trace fixes its own rate
    return workload or None


def replan_request(cluster_id: int, trigger: str, detail: str) -> Job:
    """Queue a switching-aware re-plan of the cluster against its adopted plan.

    A trigger (not a manual request) that finds a re-plan of the cluster still queued or
    running gets that job back instead of a second one.
    """
    from rest_framework.exceptions import ValidationError

    cluster = Cluster.objects.select_related("model").filter(pk=cluster_id).first()
    if cluster is None:
        raise ReplanRefused("the cluster no longer exists")
    if trigger != Trigger.MANUAL:
        active = (Job.objects.filter(cluster=cluster, status__in=(JobStatus.QUEUED, JobStatus.RUNNING))
                  .exclude(trigger="").order_by("-id").first())
        if active is not None:
            return active
    if cluster.model is None:
        raise ReplanRefused("the cluster has no model")
    servers = list(Server.objects.filter(cluster=cluster).select_related("latest_calibration"))
    if not servers:
        raise ReplanRefused("the cluster has no servers")
    workload = replan_workload(cluster)
    if workload is None:
        raise ReplanRefused("the cluster has no default workload (set default_workload)")
    doc = cluster_scenario_document(cluster, cluster.model, workload, servers=servers)
    try:
        scenario = parse_scenario_document(doc, "")
    except ValidationError as exc:
        from ..core.errors import flatten, summary
        raise ReplanRefused("the cluster cannot be planned: " + summary(flatten(exc.detail))) from None
    options = {"calibration": "measured", "simulate_requests": settings.DEFAULT_SIMULATE_REQUESTS, "seed": 1,
               "delta": cluster.replan_delta, "min_gain": cluster.replan_min_gain}
    resolved = scenario.to_dict()
    if trigger != Trigger.MANUAL:
        earlier = _same_replan(cluster, resolved, options)
        if earlier is not None:
            return earlier
    return job_create(cluster.owner, scenario=resolved, input_scenario=doc, algorithms=["proposed"],
                      options=options, cluster=cluster, model=cluster.model, trigger=trigger,
                      trigger_detail=detail[:500], previous_plan_id=cluster.adopted_plan_id)


def _same_replan(cluster: Cluster, scenario: dict[str, Any], options: dict[str, Any]) -> Job | None:
    """An earlier re-plan that already answered exactly this input, so a schedule tick adds no duplicate candidate.

    Same input: the same resolved scenario (servers, figures, workload and its arrival rate), the same
    adopted plan to switch from, and the same delta and minimum gain.
    """
    resolved = json.loads(json.dumps(scenario))
    recent = (Job.objects.filter(cluster=cluster, status=JobStatus.SUCCEEDED, previous_plan_id=cluster.adopted_plan_id)
              .exclude(trigger="").order_by("-id").only("scenario", "options")[:20])
    for job in recent:
        if (job.scenario == resolved and job.options.get("delta") == options["delta"]
                and job.options.get("min_gain") == options["min_gain"]):
            return job
    return None


def replan_trigger(cluster_id: int, trigger: str, detail: str) -> Job | None:
    """An automatic re-plan: never fails its caller (a calibration, an edit); a refusal is logged."""
    try:
        return replan_request(cluster_id, trigger, detail)
    except ReplanRefused as exc:
        log.warning("re-plan of cluster %s (%s: %s) not started: %s", cluster_id, trigger, detail, exc)
        return None


def replan_scheduled(cluster_id: int, schedule_id: int | None = None) -> int | None:
    """Body of the beat task of a ReplanSchedule; returns the job id (None when refused)."""
    detail = f"schedule {schedule_id}" if schedule_id else "schedule"
    schedule = ReplanSchedule.objects.select_related("periodic_task").filter(pk=schedule_id).first()
    if schedule is not None:
        detail = f"schedule {schedule.pk}: {schedule_description(schedule)}"
    job = replan_trigger(cluster_id, Trigger.SCHEDULE, detail)
    return job.pk if job else None


def _replan_document(job: Job, scenario, progress, time_limit_s: float | None) -> dict[str, Any]:
    from solvers.algorithms import PlanOptions
    from solvers.switching import replan

    previous = Plan.objects.filter(pk=job.previous_plan_id).values_list("document", flat=True).first()
    opts = job.options
    options = PlanOptions(simulate_requests=int(opts.get("simulate_requests", 0)), seed=int(opts.get("seed", 1)),
                          progress=progress, time_limit_s=time_limit_s)
    doc = replan(scenario, previous, float(opts.get("delta", 0.0)), options)
    progress.report(1.0, "proposed: done", force=True)
    return doc


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


def _replan_decide(job: Job, new_plan: Plan | None, scenario) -> dict[str, Any]:
    """Adopt a re-plan's result if it clears the cluster's minimum gain; else it stays a candidate."""
    cluster = Cluster.objects.select_for_update().filter(pk=job.cluster_id).first()
    if cluster is None or new_plan is None:
        return {"adopted": False, "why": "the cluster no longer exists"}
    if not new_plan.feasible:
        return {"adopted": False, "why": "the re-plan is not feasible"}
    current = Plan.objects.filter(pk=cluster.adopted_plan_id).first()
    judged = replan_gain(current, new_plan.document, scenario)
    min_gain = float(job.options.get("min_gain", cluster.replan_min_gain))
    adopted = judged["forced"] or (judged["gain"] is not None and judged["gain"] >= min_gain)
    outcome = {**judged, "min_gain": min_gain, "adopted": adopted, "plan": new_plan.pk,
               "against_plan": current.pk if current else None}
    if adopted:
        adoption = _adopt(cluster, new_plan, current, user=None, trigger=job.trigger,
                          detail=f"{job.trigger}: {judged['why']}", gain=judged["gain"])
        outcome["adoption"] = adoption.pk
    else:
        outcome["why"] = f"kept as a candidate: {judged['why']} is below the minimum gain {min_gain:.1%}" \
            if judged["gain"] is not None else f"kept as a candidate: {judged['why']}"
    return outcome


def _adopt(cluster: Cluster, plan_row: Plan, previous: Plan | None, *, user, trigger: str, detail: str,
           gain: float | None) -> PlanAdoption:
    from solvers.switching import plan_diff

    adoption = PlanAdoption.objects.create(
        cluster=cluster, plan=plan_row, previous_plan=previous, adopted_by=user, trigger=trigger, detail=detail[:500],
        gain=gain, diff=plan_diff(previous.document if previous else None, plan_row.document))
    Cluster.objects.filter(pk=cluster.pk).update(adopted_plan=plan_row)
    if cluster.replan_webhook_url:
        transaction.on_commit(lambda: _enqueue_notify(adoption.pk))
    return adoption


def plan_adopt(user, plan_row: Plan) -> PlanAdoption:
    """A user adopts one of their plans for the plan's cluster."""
    from rest_framework.exceptions import ValidationError
    if plan_row.job.cluster_id is None:
        raise ValidationError({"plan": ["this plan was not made for a stored cluster; only a cluster's plans "
                                        "can be adopted"]})
    if not plan_row.feasible:
        raise ValidationError({"plan": ["an infeasible plan cannot be adopted"]})
    with transaction.atomic():
        cluster = Cluster.objects.select_for_update().get(pk=plan_row.job.cluster_id)
        if cluster.adopted_plan_id == plan_row.pk:
            raise Conflict(f"plan {plan_row.pk} is already the adopted plan of cluster {cluster.pk}")
        current = Plan.objects.filter(pk=cluster.adopted_plan_id).first()
        return _adopt(cluster, plan_row, current, user=user, trigger="",
                      detail=f"adopted by {user.get_username()}", gain=None)


def _enqueue_notify(adoption_id: int) -> None:
    from celery import current_app
    try:
        current_app.send_task(NOTIFY_ADOPTION, args=[adoption_id])
    except Exception:  # noqa: BLE001 - the broker may be down; the adoption stands, the call is recorded as not made
        log.exception("could not enqueue the webhook of adoption %s", adoption_id)
        PlanAdoption.objects.filter(pk=adoption_id).update(webhook_error="could not enqueue the webhook call")


def adoption_payload(adoption: PlanAdoption) -> dict[str, Any]:
    return {"event": "plan.adopted", "cluster": adoption.cluster_id, "cluster_name": adoption.cluster.name,
            "plan": adoption.plan_id, "previous_plan": adoption.previous_plan_id,
            "adopted_by": adoption.adopted_by.get_username() if adoption.adopted_by else None,
            "trigger": adoption.trigger, "detail": adoption.detail, "gain": adoption.gain,
            "created_at": adoption.created_at.isoformat(), "diff": adoption.diff}


def webhook_target_error(url: str) -> str | None:
    """Why the workers must not call ``url`` (it resolves to a non-public address), or None."""
    import ipaddress
    import socket
    from urllib.parse import urlsplit

    if settings.REPLAN_WEBHOOK_ALLOW_PRIVATE:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "refused: the webhook URL must be http(s) with a host name"
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                                   proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        return f"refused: cannot resolve {parts.hostname}: {exc}"
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global:
            return (f"refused: {parts.hostname} resolves to {address}, a loopback, private or link-local address "
                    "(set CHAINPLAN_WEBHOOK_ALLOW_PRIVATE=true to allow)")
    return None


def adoption_notify(adoption_id: int) -> str:
    """POST the adoption (with its diff) to the cluster's webhook; the outcome is recorded, never raised."""
    import requests

    adoption = PlanAdoption.objects.select_related("cluster", "adopted_by").filter(pk=adoption_id).first()
    if adoption is None or not adoption.cluster.replan_webhook_url:
        return "no webhook"
    status_code, error = None, ""
    refused = webhook_target_error(adoption.cluster.replan_webhook_url)
    if refused:
        PlanAdoption.objects.filter(pk=adoption_id).update(webhook_error=refused[:500], webhook_at=timezone.now())
        return refused
    try:
        response = requests.post(adoption.cluster.replan_webhook_url, json=adoption_payload(adoption),
                                 timeout=settings.REPLAN_WEBHOOK_TIMEOUT_S, allow_redirects=False)
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"the webhook answered HTTP {status_code}"
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}: {exc}"
    PlanAdoption.objects.filter(pk=adoption_id).update(webhook_status=status_code, webhook_error=error[:500],
                                                       webhook_at=timezone.now())
    return error or "ok"


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


@transaction.atomic
def schedule_save(cluster: Cluster, data: dict[str, Any], *, instance: ReplanSchedule | None = None) -> ReplanSchedule:
    """Create or change a schedule; ``data`` is validated by ScheduleSerializer (kind + every/period or cron)."""
    import json
    import uuid

    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    task = instance.periodic_task if instance else PeriodicTask(
        name=f"re-plan cluster {cluster.pk} ({uuid.uuid4().hex[:8]})", task=REPLAN_SCHEDULED,
        kwargs=json.dumps({"cluster_id": cluster.pk}))
    kind = data.get("kind") or ("interval" if task.interval_id else "cron")
    if kind == "interval":
        every = data.get("every") or (task.interval.every if task.interval_id else None)
        period = data.get("period") or (task.interval.period if task.interval_id else "minutes")
        task.interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=period)
        task.crontab = None
    else:
        fields = data.get("cron_fields")
        if fields is None and task.crontab_id:
            c = task.crontab
            fields = {"minute": c.minute, "hour": c.hour, "day_of_month": c.day_of_month,
                      "month_of_year": c.month_of_year, "day_of_week": c.day_of_week}
        task.crontab, _ = CrontabSchedule.objects.get_or_create(**fields, timezone="UTC")
        task.interval = None
    if "enabled" in data:
        task.enabled = data["enabled"]
    task.save()
    schedule = instance or ReplanSchedule.objects.create(cluster=cluster, periodic_task=task)
    if instance is None:
        task.kwargs = json.dumps({"cluster_id": cluster.pk, "schedule_id": schedule.pk})
        task.save(update_fields=["kwargs"])
    return schedule


def schedule_delete(schedule: ReplanSchedule) -> None:
    # deleting the periodic task cascades to the schedule
    schedule.periodic_task.delete()


register_replan_runner(ReplanRunner(compute=_replan_document, decide=_replan_decide))
