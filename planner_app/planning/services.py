"""Write paths of planning jobs: submission, cancellation, execution and the sweep.

Job execution is built so that a job is never lost and never half-written:

- ``claim_job`` moves a job to running under a row lock and bumps ``attempts``;
  a duplicate delivery of the same message finds the job running (with a fresh
  heartbeat) or finished and does nothing.
- While it runs, a heartbeat thread refreshes ``heartbeat_at``; every write of
  the worker is conditional on ``status=running`` and its own ``attempts``, so a
  cancelled job or one taken over after a presumed worker death is abandoned.
- Each plan is written as soon as its algorithm finishes (so a job's plans grow
  while it runs), under the same ownership condition; the final status is
  written in one transaction.  An attempt that resumes a job keeps the plans
  of the algorithms that already finished and runs only the others.
- ``sweep_jobs`` (periodic) re-queues jobs whose heartbeat stopped (the worker
  died) and re-sends queued jobs whose message may have been lost.

A re-plan job (one with a ``trigger``) is computed and judged by the re-planning
domain, whose runner ``PlannerAppConfig.ready`` registers here
(``register_replan_runner``): planning does not import it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable

from celery import current_app
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from solvers import Scenario, ScenarioError, parse_scenario
from solvers.runner import feasibility_error, plan
from solvers.export import petals_launch

from ..catalog.models import Cluster, ModelSpec
from ..core.errors import Conflict
from .models import Job, JobStatus, Plan

log = logging.getLogger("planner_app.jobs")

# Registered task names (tasks.py): sent by name so that services need not import the tasks.
RUN_JOB = "planner_app.run_job"
SWEEP_JOBS = "planner_app.sweep_jobs"


@dataclass(frozen=True)
class ReplanRunner:
    """How a re-plan job is computed (``compute``) and what becomes of its result (``decide``)."""

    compute: Callable[..., dict[str, Any]]     # (job, scenario, progress, time_limit_s) -> plan document
    decide: Callable[..., dict[str, Any]]      # (job, plan row, scenario) -> replan_outcome; in the final transaction


_replan_runner: ReplanRunner | None = None


def register_replan_runner(runner: ReplanRunner) -> None:
    global _replan_runner
    _replan_runner = runner


def _runner() -> ReplanRunner:
    if _replan_runner is None:
        raise RuntimeError("re-plan jobs cannot run: the re-planning domain is not loaded")
    return _replan_runner


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
    try:
        current_app.send_task(RUN_JOB, args=[job.pk], **_task_limits(job.options))
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


def job_create_imported(owner, *, scenario: dict[str, Any], input_scenario: dict[str, Any], document: dict[str, Any],
                        options: dict[str, Any], reason: str, cluster: Cluster | None = None,
                        model: ModelSpec | None = None) -> tuple[Job, Plan]:
    """Store a plan that was not computed here (a runtime's observed placement) as a finished job with that one
    plan, so that it reads, is listed and can be adopted like any other; no worker is involved."""
    now = timezone.now()
    job = Job.objects.create(
        owner=owner, cluster=cluster, model=model, scenario=scenario, input_scenario=input_scenario,
        algorithms=[document["algorithm"]], options=options, status=JobStatus.SUCCEEDED, progress_fraction=1.0,
        progress_message="imported", reason=reason, enqueued_at=now, started_at=now, finished_at=now)
    plan_row = _plan_row(job, document)
    plan_row.save()
    return job, plan_row


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


def _save_plan(job_id: int, attempt: int, doc: dict[str, Any]) -> None:
    """Store one algorithm's plan now (readers see it while the job runs); only while this attempt owns the job."""
    with transaction.atomic():
        job = _owned(job_id, attempt).select_for_update().first()
        if job is None:
            raise JobAbandoned()
        _plan_row(job, doc).save()


def _finished_plans(job_id: int) -> dict[str, list[dict[str, Any]]]:
    """Plans an earlier attempt of this job already stored, per algorithm in order."""
    done: dict[str, list[dict[str, Any]]] = {}
    for algorithm, document in Plan.objects.filter(job_id=job_id).order_by("id").values_list("algorithm", "document"):
        done.setdefault(algorithm, []).append(document)
    return done


def _finish(job_id: int, attempt: int, *, plans: list[dict[str, Any]] | None = None,
            error: str | None = None, scenario=None) -> bool:
    """Write the outcome atomically, only if this attempt still owns the job.

    ``plans`` not yet stored are stored with it.  A re-plan job's adoption
    decision is part of the same transaction.
    """
    with transaction.atomic():
        job = _owned(job_id, attempt).select_for_update().first()
        if job is None:
            return False
        if plans:
            Plan.objects.bulk_create([_plan_row(job, doc) for doc in plans])
        if job.trigger and error is None and scenario is not None:
            first = Plan.objects.filter(job=job).order_by("id").first()
            if first is not None:
                job.replan_outcome = _runner().decide(job, first, scenario)
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
        done = _finished_plans(job_id) if attempt > 1 else {}
        for index, algorithm in enumerate(job.algorithms):
            current = algorithm
            if done.get(algorithm):
                plans.append(done[algorithm].pop(0))      # an earlier attempt finished it: keep that plan
                continue
            progress.start(index)
            remaining = max(0.001, deadline - time.monotonic()) if deadline else None
            if job.trigger:
                doc = _runner().compute(job, scenario, progress, remaining)
            else:
                doc = plan(scenario, algorithm, c=opts.get("c"),
                           simulate_requests=opts.get("simulate_requests", settings.DEFAULT_SIMULATE_REQUESTS),
                           seed=opts.get("seed", 1), progress=progress, time_limit_s=remaining,
                           placement=opts.get("placement"), wall_clock_limit=True)
            _save_plan(job_id, attempt, doc)
            plans.append(doc)
        ok = _finish(job_id, attempt, error=_infeasible_error(plans), scenario=scenario)
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


def planned_scenario(plan: Plan) -> Scenario | None:
    """The scenario a plan was made for, or None for a plan stored under older rules (its document still
    fixes the layer split; the flags that need the scenario are then left out and said so)."""
    try:
        return parse_scenario(plan.job.input_scenario)
    except ScenarioError:
        return None


def petals_launch_commands(plan: Plan, initial_peers: str | None = None) -> tuple[list[str], list[str]]:
    """(commands, warnings): the plan's PETALS ``run_server`` commands, from ``solvers.export`` like every other
    PETALS command, with the plan's cache size, dtype and throughput.  ``ScenarioError`` for an infeasible plan."""
    model_name = (plan.job.scenario.get("model") or {}).get("name") or "model"
    return petals_launch(plan.document, model_name, initial_peers, planned_scenario(plan))
