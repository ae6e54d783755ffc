"""Write paths: creating and changing objects, and running planning jobs.

Job execution is built so that a job is never lost and never half-written:

- ``claim_job`` moves a job to running under a row lock and bumps ``attempts``;
  a duplicate delivery of the same message finds the job running (with a fresh
  heartbeat) or finished and does nothing.
- While it runs, a heartbeat thread refreshes ``heartbeat_at``; every write of
  the worker is conditional on ``status=running`` and its own ``attempts``, so a
  cancelled job or one taken over after a presumed worker death is abandoned.
- All plans and the final status are written in one transaction.
- ``sweep_jobs`` (periodic) re-queues jobs whose heartbeat stopped (the worker
  died) and re-sends queued jobs whose message may have been lost.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from datetime import timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import close_old_connections, connection, transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token

from solvers import ScenarioError, parse_scenario
from solvers.api import feasibility_error, plan

from .errors import Conflict
from .models import Cluster, Job, JobStatus, ModelSpec, Plan, PlanAdoption, ReplanSchedule, Server, Trigger

log = logging.getLogger("planner_app.jobs")


# ---------------------------------------------------------------------------
# users
# ---------------------------------------------------------------------------

def user_ensure(username: str, password: str | None = None, *, superuser: bool = False) -> tuple[Any, str]:
    """Create the user if needed (setting the password when given); return it and its API token."""
    User = get_user_model()
    user, created = User.objects.get_or_create(username=username)
    if password is not None:
        user.set_password(password)
    elif created:
        user.set_unusable_password()
    if superuser:
        user.is_staff = user.is_superuser = True
    user.save()
    token, _ = Token.objects.get_or_create(user=user)
    return user, token.key


# ---------------------------------------------------------------------------
# models and clusters
# ---------------------------------------------------------------------------

MODEL_NUMBERS = ("num_blocks", "block_size_gb", "cache_size_gb", "flops_per_token_gflops")


def model_save(owner, data: dict[str, Any], *, instance: ModelSpec | None = None) -> ModelSpec:
    """``data`` is validated and resolved (numbers derived) by ModelSpecSerializer."""
    model = instance or ModelSpec(owner=owner)
    for key, value in data.items():
        setattr(model, key, value)
    model.save()
    return model


def _server_fields(doc: dict[str, Any]) -> dict[str, Any]:
    from .selectors import SERVER_FIGURES
    return {name: doc.get(name) for name in SERVER_FIGURES}


@transaction.atomic
def cluster_save(owner, data: dict[str, Any], *, instance: Cluster | None = None) -> Cluster:
    """Create or update a cluster; ``data["servers"]`` (when given) replaces the list.

    Servers are matched by ``server_id`` so their calibrations and probe tokens survive an edit.
    """
    servers = data.pop("servers", None)
    cluster = instance or Cluster(owner=owner)
    for key, value in data.items():
        setattr(cluster, key, value)
    cluster.save()
    if servers is not None:
        existing = {s.server_id: s for s in Server.objects.filter(cluster=cluster)}
        keep = {doc["server_id"] for doc in servers}
        added, removed = sorted(keep - set(existing)), sorted(set(existing) - keep)
        cluster.servers.exclude(server_id__in=keep).delete()
        new, changed = [], []
        for position, doc in enumerate(servers):
            fields = {"position": position, **_server_fields(doc)}
            server = existing.get(doc["server_id"])
            if server is None:
                new.append(Server(cluster=cluster, server_id=doc["server_id"], **fields))
            else:
                for key, value in fields.items():
                    setattr(server, key, value)
                changed.append(server)
        Server.objects.bulk_create(new, batch_size=1000)
        if changed:
            Server.objects.bulk_update(changed, ["position", *_server_fields({}).keys()], batch_size=1000)
        if instance is not None and (added or removed) and cluster.replan_on_server_change:
            parts = [f"{label}: {', '.join(ids[:10])}{' …' if len(ids) > 10 else ''}"
                     for label, ids in (("removed", removed), ("added", added)) if ids]
            replan_trigger(cluster.pk, Trigger.SERVERS, "servers " + "; ".join(parts))
    return cluster


@transaction.atomic
def cluster_import(owner, scenario_doc: dict[str, Any]) -> Cluster:
    """A cluster (and its model, when the document has one) from a validated scenario document."""
    model = None
    if scenario_doc.get("model"):
        resolved = parse_scenario(scenario_doc).model
        raw = scenario_doc["model"]
        model = ModelSpec.objects.create(
            owner=owner, name=resolved.name, num_blocks=resolved.num_blocks, block_size_gb=resolved.block_size_gb,
            cache_size_gb=resolved.cache_size_gb, flops_per_token_gflops=resolved.flops_per_token_gflops,
            architecture=raw.get("architecture"))
    servers = [{"server_id": s["id"], **_server_fields(s)} for s in scenario_doc["servers"]]
    return cluster_save(owner, {"name": scenario_doc.get("name", "imported"), "model": model,
                                "default_workload": scenario_doc.get("workload"), "servers": servers})


# ---------------------------------------------------------------------------
# jobs: submission and cancellation
# ---------------------------------------------------------------------------

def _task_limits(options: dict[str, Any]) -> dict[str, float]:
    """Celery soft/hard limits for a job: the user's time limit plus slack, capped by the global ones."""
    soft = float(settings.CELERY_TASK_SOFT_TIME_LIMIT)
    hard = float(settings.CELERY_TASK_TIME_LIMIT)
    limit = options.get("time_limit_s")
    if limit:
        soft = min(soft, float(limit) * 1.5 + 5.0)
        hard = min(hard, soft + 15.0)
    return {"soft_time_limit": soft, "time_limit": hard}


def enqueue_job(job: Job) -> None:
    """Send the job's message; a broker failure leaves the job queued for the sweep to re-send."""
    from .tasks import run_job
    try:
        run_job.apply_async(args=[job.pk], **_task_limits(job.options))
    except Exception:   # noqa: BLE001 - the broker may be down; the job stays queued and is re-sent
        log.exception("could not enqueue job %s; the sweep will re-send it", job.pk)


def job_create(owner, *, scenario: dict[str, Any], input_scenario: dict[str, Any], algorithms: list[str], options: dict[str, Any],
               cluster: Cluster | None = None, model: ModelSpec | None = None, **replan_fields: Any) -> Job:
    """Store a queued job for a resolved scenario document and enqueue it once the row is committed.

    ``replan_fields`` (trigger, trigger_detail, previous_plan) make it a re-plan job.
    """
    job = Job.objects.create(owner=owner, cluster=cluster, model=model, scenario=scenario,
                             input_scenario=input_scenario, algorithms=algorithms, options=options, status=JobStatus.QUEUED,
                             enqueued_at=timezone.now(), progress_message="waiting for a worker", **replan_fields)
    transaction.on_commit(lambda: enqueue_job(job))
    return job


def job_cancel(job: Job, by: str) -> Job:
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
            raise Conflict(f"job {job.pk} is {job.status}; only queued or running jobs can be cancelled")
        job.status = JobStatus.CANCELLED
        job.finished_at = timezone.now()
        job.reason = f"cancelled by {by}"
        job.progress_message = "cancelled"
        job.save(update_fields=["status", "finished_at", "reason", "progress_message"])
    return job


# ---------------------------------------------------------------------------
# jobs: execution (called by the Celery task)
# ---------------------------------------------------------------------------

class JobAbandoned(Exception):
    """The job was cancelled or taken over by another attempt: stop and write nothing."""


def _stale_cutoff():
    return timezone.now() - timedelta(seconds=settings.JOB_STALE_AFTER_S)


def claim_job(job_id: int, worker: str) -> Job | None:
    """Take a job for this worker; None when there is nothing to do (finished, or running elsewhere)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None or job.is_terminal:
            return None
        now = timezone.now()
        if job.status == JobStatus.RUNNING:
            if job.heartbeat_at and job.heartbeat_at >= _stale_cutoff():
                return None      # a duplicate delivery while a live worker runs it
            previous = job.worker or "unknown worker"
            job.reason = f"resumed after {previous} stopped responding"
        if job.attempts >= settings.JOB_MAX_ATTEMPTS:
            _give_up(job)
            return None
        job.status = JobStatus.RUNNING
        job.attempts += 1
        job.worker = worker
        job.started_at = now
        job.heartbeat_at = now
        job.progress_fraction = 0.0
        job.progress_algorithm = None
        job.progress_message = "starting"
        job.save()
        return job


def _mark_failed(job: Job, error: str) -> None:
    job.status = JobStatus.FAILED
    job.error = error
    job.finished_at = timezone.now()
    job.progress_message = "failed"
    job.save()


def _give_up(job: Job) -> None:
    _mark_failed(job, f"gave up after {job.attempts} attempts: the worker running it "
                      f"({job.worker or 'unknown'}) stopped responding each time")


def _owned(job_id: int, attempt: int):
    return Job.objects.filter(pk=job_id, status=JobStatus.RUNNING, attempts=attempt)


class _Heartbeat(threading.Thread):
    """Refreshes heartbeat_at while the job computes; notices cancellation."""

    def __init__(self, job_id: int, attempt: int):
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.job_id, self.attempt = job_id, attempt
        self.stopped = threading.Event()
        self.abandoned = False

    def run(self) -> None:
        try:
            while not self.stopped.wait(settings.JOB_HEARTBEAT_S):
                try:
                    if not _owned(self.job_id, self.attempt).update(heartbeat_at=timezone.now()):
                        self.abandoned = True
                        return
                except Exception:  # noqa: BLE001 - a transient DB error must not kill the heartbeat
                    log.warning("heartbeat of job %s failed", self.job_id, exc_info=True)
        finally:
            connection.close()


class _Progress:
    """Progress callback for the solver: throttled, conditional writes; raises when the job was abandoned."""

    MIN_INTERVAL_S = 0.25

    def __init__(self, job_id: int, attempt: int, algorithms: list[str], heartbeat: _Heartbeat):
        self.job_id, self.attempt, self.algorithms, self.heartbeat = job_id, attempt, algorithms, heartbeat
        self.index = 0
        self.last_write = 0.0

    def start(self, index: int) -> None:
        self.index = index
        self.report(0.0, f"{self.algorithms[index]}: starting", force=True)

    def __call__(self, fraction: float, message: str) -> None:
        self.report(fraction, message)

    def report(self, fraction: float, message: str, force: bool = False) -> None:
        if self.heartbeat.abandoned:
            raise JobAbandoned()
        now = time.monotonic()
        if not force and now - self.last_write < self.MIN_INTERVAL_S:
            return
        self.last_write = now
        try:
            fraction = float(fraction)
        except (TypeError, ValueError):
            fraction = 0.0
        fraction = min(max(fraction, 0.0), 1.0) if math.isfinite(fraction) else 0.0
        overall = (self.index + fraction) / len(self.algorithms)
        updated = _owned(self.job_id, self.attempt).update(
            progress_fraction=overall, progress_algorithm=self.algorithms[self.index],
            progress_message=str(message)[:500], heartbeat_at=timezone.now())
        if not updated:
            raise JobAbandoned()


def _plan_row(job: Job, doc: dict[str, Any]) -> Plan:
    sim = doc.get("simulation") or {}
    bounds = doc.get("bounds") or {}
    mean = sim.get("mean_response_s")
    if mean is None:
        mean = bounds.get("response_time_upper_s")
    return Plan(job=job, algorithm=doc["algorithm"], feasible=bool(doc.get("feasible")),
                mean_response_s=mean, p95_response_s=sim.get("p95_response_s"),
                total_capacity=doc.get("total_capacity"), solve_time_s=doc.get("solve_time_s"), document=doc)


def _finish(job_id: int, attempt: int, *, plans: list[dict[str, Any]] | None = None,
            error: str | None = None, scenario=None) -> bool:
    """Write the outcome atomically, only if this attempt still owns the job.

    A re-plan job's adoption decision is part of the same transaction.
    """
    with transaction.atomic():
        job = _owned(job_id, attempt).select_for_update().first()
        if job is None:
            return False
        if plans:
            Plan.objects.bulk_create([_plan_row(job, doc) for doc in plans])
            if job.trigger and error is None and scenario is not None:
                job.replan_outcome = _replan_decide(job, Plan.objects.filter(job=job).order_by("id").first(),
                                                    scenario)
        now = timezone.now()
        job.finished_at = now
        job.heartbeat_at = now
        if error is None:
            job.status = JobStatus.SUCCEEDED
            job.progress_fraction = 1.0
            job.progress_message = "done"
        else:
            job.status = JobStatus.FAILED
            job.error = error
            job.progress_message = "failed"
        job.save()
        return True


def _infeasible_error(plans: list[dict[str, Any]]) -> str | None:
    """A job whose every plan is infeasible has failed; the reasons say why."""
    if any(doc.get("feasible") for doc in plans):
        return None
    reasons = []
    for doc in plans:
        reason = f"{doc.get('algorithm')}: {doc.get('reason') or 'no feasible plan'}"
        if reason not in reasons:
            reasons.append(reason)
    return "no feasible plan: " + "; ".join(reasons)


def execute_job(job_id: int, worker: str, soft_limit_s: float | None = None) -> str:
    """Run a job's algorithms and store the plans; returns what happened (for logs and tests)."""
    close_old_connections()
    job = claim_job(job_id, worker)
    if job is None:
        return "skipped"
    attempt = job.attempts
    heartbeat = _Heartbeat(job_id, attempt)
    heartbeat.start()
    progress = _Progress(job_id, attempt, job.algorithms, heartbeat)
    opts = job.options
    current = None
    try:
        scenario = parse_scenario(job.input_scenario)
        reason = feasibility_error(scenario)
        if reason:
            return "failed" if _finish(job_id, attempt, error=reason) else "abandoned"
        limit = opts.get("time_limit_s")
        deadline = time.monotonic() + limit if limit else None
        plans = []
        for index, algorithm in enumerate(job.algorithms):
            current = algorithm
            progress.start(index)
            remaining = max(0.001, deadline - time.monotonic()) if deadline else None
            if job.trigger:
                plans.append(_replan_document(job, scenario, progress, remaining))
                continue
            plans.append(plan(scenario, algorithm, c=opts.get("c"),
                              simulate_requests=opts.get("simulate_requests", settings.DEFAULT_SIMULATE_REQUESTS),
                              seed=opts.get("seed", 1), progress=progress, time_limit_s=remaining))
        ok = _finish(job_id, attempt, plans=plans, error=_infeasible_error(plans), scenario=scenario)
        return "done" if ok else "abandoned"
    except JobAbandoned:
        return "abandoned"
    except SoftTimeLimitExceeded:
        limit = soft_limit_s or opts.get("time_limit_s") or settings.CELERY_TASK_SOFT_TIME_LIMIT
        _finish(job_id, attempt, error=f"stopped: the job ran past its time limit ({limit:g} s)"
                                       + (f" while running {current}" if current else ""))
        return "failed"
    except ScenarioError as exc:
        _finish(job_id, attempt, error=str(exc))
        return "failed"
    except Exception as exc:  # noqa: BLE001 - a solver bug fails the job with a reason, not a lost job
        log.exception("job %s failed in %s", job_id, current)
        _finish(job_id, attempt, error=f"internal error while running {current or 'the job'}: "
                                       f"{type(exc).__name__}: {exc}"[:2000])
        return "failed"
    finally:
        heartbeat.stopped.set()
        heartbeat.join(timeout=5)


def fail_after_hard_timeout(job_id: int, limit_s: float) -> None:
    """Called in the worker's main process when the pool killed the job at its hard time limit."""
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id, status=JobStatus.RUNNING).first()
        if job is not None:
            _mark_failed(job, f"stopped: the job hit the hard time limit of {limit_s:g} s")


# ---------------------------------------------------------------------------
# sweep
# ---------------------------------------------------------------------------

def sweep_jobs(batch: int = 500) -> dict[str, int]:
    """Recover jobs whose worker died, and re-send queued jobs whose message may be lost.

    Duplicate messages are harmless: ``claim_job`` runs each job once.
    """
    counts = {"requeued": 0, "failed": 0, "resent": 0}
    stale_ids = list(Job.objects.filter(status=JobStatus.RUNNING, heartbeat_at__lt=_stale_cutoff())
                     .values_list("pk", flat=True)[:batch])
    for job_id in stale_ids:
        with transaction.atomic():
            job = (Job.objects.select_for_update()
                   .filter(pk=job_id, status=JobStatus.RUNNING, heartbeat_at__lt=_stale_cutoff()).first())
            if job is None:
                continue
            if job.attempts >= settings.JOB_MAX_ATTEMPTS:
                _give_up(job)
                counts["failed"] += 1
                continue
            job.reason = f"re-queued: {job.worker or 'its worker'} stopped responding"
            job.status = JobStatus.QUEUED
            job.enqueued_at = timezone.now()
            job.progress_message = "waiting for a worker (re-queued)"
            job.save(update_fields=["status", "reason", "enqueued_at", "progress_message"])
            transaction.on_commit(lambda job=job: enqueue_job(job))
            counts["requeued"] += 1
    cutoff = timezone.now() - timedelta(seconds=settings.JOB_REQUEUE_QUEUED_AFTER_S)
    for job in Job.objects.filter(status=JobStatus.QUEUED, enqueued_at__lt=cutoff).only("pk", "options")[:batch]:
        if Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(enqueued_at=timezone.now()):
            enqueue_job(job)
            counts["resent"] += 1
    if any(counts.values()):
        log.info("sweep: %s", counts)
    return counts


# ---------------------------------------------------------------------------
# probe tokens
# ---------------------------------------------------------------------------

def probe_token_create(server: Server):
    """A new token that may only report calibrations for ``server``."""
    from .models import ProbeToken
    return ProbeToken.objects.create(server=server)


def _figures(report: dict[str, Any]) -> dict[str, float]:
    """The planner's figures (scenario CalibrationDoc fields) from a validated probe report."""
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
    return figures


@transaction.atomic
def calibration_record(server: Server, report: dict[str, Any]):
    """Store a validated probe report and make it the server's latest calibration."""
    from .models import ServerCalibration
    model_name = str((report.get("model") or {}).get("name") or "")[:200]
    previous = ServerCalibration.objects.filter(pk=server.latest_calibration_id).first()
    before = _effective_figures(server, previous.figures if previous else None)
    calibration = ServerCalibration.objects.create(server=server, model_name=model_name,
                                                   figures=_figures(report), report=report)
    Server.objects.filter(pk=server.pk).update(latest_calibration=calibration)
    _calibration_trigger(server, before, _effective_figures(server, calibration.figures))
    return calibration


TRIGGER_FIGURES = ("memory_gb", "comm_time_s", "block_time_s")


def _effective_figures(server: Server, calibration: dict[str, Any] | None) -> dict[str, float]:
    """The figures the planner uses for a server: its measured ones over the configured ones."""
    figures = {k: getattr(server, k) for k in TRIGGER_FIGURES if getattr(server, k) is not None}
    figures.update({k: v for k, v in (calibration or {}).items() if k in TRIGGER_FIGURES})
    return figures


def _calibration_trigger(server: Server, before: dict[str, float], after: dict[str, float]) -> None:
    cluster = Cluster.objects.filter(pk=server.cluster_id).only("pk", "adopted_plan", "replan_calibration_threshold").first()
    if cluster is None or cluster.adopted_plan_id is None:
        return      # nothing adopted: nothing to keep good
    changes = []
    for key in TRIGGER_FIGURES:
        old, new = before.get(key), after.get(key)
        if old and new is not None and abs(new - old) / abs(old) > cluster.replan_calibration_threshold:
            changes.append(f"{key} {old:.4g} -> {new:.4g} ({(new - old) / old:+.0%})")
    if changes:
        replan_trigger(cluster.pk, Trigger.CALIBRATION,
                       f"new calibration of server {server.server_id}: " + ", ".join(changes))


# ---------------------------------------------------------------------------
# re-planning (README "Re-planning", spec section 2.6)
# ---------------------------------------------------------------------------

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
    from .selectors import cluster_scenario_document
    from .validation import parse_scenario_document
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
        from .errors import flatten, summary
        raise ReplanRefused("the cluster cannot be planned: " + summary(flatten(exc.detail))) from None
    options = {"calibration": "measured", "simulate_requests": settings.DEFAULT_SIMULATE_REQUESTS, "seed": 1,
               "delta": cluster.replan_delta, "min_gain": cluster.replan_min_gain}
    return job_create(cluster.owner, scenario=scenario.to_dict(), input_scenario=doc, algorithms=["proposed"],
                      options=options, cluster=cluster, model=cluster.model, trigger=trigger,
                      trigger_detail=detail[:500], previous_plan_id=cluster.adopted_plan_id)


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


def _predicted_mean(doc: dict[str, Any], scenario) -> tuple[float | None, list[str]]:
    """Upper bound on the mean response time of a plan's chains, re-timed on ``scenario``'s servers.

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
    return (bounds.upper_s if bounds.stable else None), missing


def replan_gain(current: Plan | None, new_doc: dict[str, Any], scenario) -> dict[str, Any]:
    """Relative gain of ``new_doc`` over the adopted plan, both judged on the current cluster and load.

    ``forced`` is true when the adopted plan cannot stay (none yet, a server gone, overloaded).
    """
    new_mean, _ = _predicted_mean(new_doc, scenario)
    out: dict[str, Any] = {"predicted_old_s": None, "predicted_new_s": new_mean, "gain": None, "forced": False}
    if current is None:
        return {**out, "forced": True, "why": "no plan was adopted yet"}
    old_mean, missing = _predicted_mean(current.document, scenario)
    out["predicted_old_s"] = old_mean
    if missing:
        return {**out, "forced": True, "why": f"the adopted plan uses servers no longer in the cluster: "
                                              f"{', '.join(missing[:10])}"}
    if old_mean is None:
        return {**out, "forced": True, "why": "the adopted plan is overloaded at the current arrival rate"}
    if new_mean is None:
        return {**out, "why": "the new plan is overloaded at the current arrival rate"}
    gain = (old_mean - new_mean) / old_mean
    return {**out, "gain": gain, "why": f"predicted mean response {old_mean:.4g} s -> {new_mean:.4g} s ({gain:+.1%})"}


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
    from .tasks import notify_adoption
    try:
        notify_adoption.apply_async(args=[adoption_id])
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
    from .selectors import planned_arrival_rate

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


# ---------------------------------------------------------------------------
# re-planning schedules (django-celery-beat)
# ---------------------------------------------------------------------------

def schedule_description(schedule: ReplanSchedule) -> str:
    task = schedule.periodic_task
    if task.interval_id:
        return f"every {task.interval.every} {task.interval.period}"
    c = task.crontab
    return f"cron {c.minute} {c.hour} {c.day_of_month} {c.month_of_year} {c.day_of_week}" if c else "no schedule"


@transaction.atomic
def schedule_save(cluster: Cluster, data: dict[str, Any], *, instance: ReplanSchedule | None = None) -> ReplanSchedule:
    """Create or change a schedule; ``data`` is validated by ScheduleSerializer (kind + every/period or cron)."""
    import json
    import uuid

    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    task = instance.periodic_task if instance else PeriodicTask(
        name=f"re-plan cluster {cluster.pk} ({uuid.uuid4().hex[:8]})", task="planner_app.replan_scheduled",
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
