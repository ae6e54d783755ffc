"""Planning jobs and the plans they produce."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from ..catalog.models import Cluster, ModelSpec


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class Trigger(models.TextChoices):
    """Why a re-plan job ran (blank: an ordinary planning job)."""

    MANUAL = "manual"
    SCHEDULE = "schedule"
    CALIBRATION = "calibration"
    SERVERS = "servers"
    LOAD = "load"
    SERVICE_TIME = "service_time"      # a chain's measured service time (live dispatcher) drifted from the plan


class Job(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs")
    cluster = models.ForeignKey(Cluster, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    model = models.ForeignKey(ModelSpec, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    scenario = models.JSONField()         # the resolved scenario document that is planned (shown to users)
    # The document as validated, which the worker parses: the resolved form drops
    # token-dependent timings that the simulator uses with a trace.
    input_scenario = models.JSONField()
    algorithms = models.JSONField()
    options = models.JSONField(default=dict)

    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED, db_index=True)
    progress_fraction = models.FloatField(default=0.0)
    progress_algorithm = models.CharField(max_length=64, null=True, blank=True)
    progress_message = models.CharField(max_length=500, blank=True, default="")
    error = models.TextField(null=True, blank=True)
    reason = models.CharField(max_length=500, blank=True, default="")   # why the status last changed
    # Re-plan jobs: what started them, against which adopted plan, and what became of the result.
    trigger = models.CharField(max_length=16, choices=Trigger.choices, blank=True, default="", db_index=True)
    trigger_detail = models.CharField(max_length=500, blank=True, default="")
    previous_plan = models.ForeignKey("Plan", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    replan_outcome = models.JSONField(null=True, blank=True)
    worker = models.CharField(max_length=255, null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    enqueued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="job_owner_created"),
            models.Index(fields=["status", "heartbeat_at"], name="job_status_heartbeat"),
        ]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class Plan(models.Model):
    """One algorithm's plan document for a job, with indexed summary fields."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="plans")
    algorithm = models.CharField(max_length=64, db_index=True)
    feasible = models.BooleanField()
    # Simulated mean response time when simulated, else the closed-form upper bound.
    mean_response_s = models.FloatField(null=True, blank=True, db_index=True)
    p95_response_s = models.FloatField(null=True, blank=True)
    total_capacity = models.IntegerField(null=True, blank=True, db_index=True)
    solve_time_s = models.FloatField(null=True, blank=True)
    document = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["job_id", "id"]
        # One plan per algorithm per job: a redelivered task cannot duplicate results.
        constraints = [models.UniqueConstraint(fields=["job", "algorithm"], name="unique_plan_per_job_algorithm")]

    def __str__(self) -> str:
        return f"{self.algorithm} plan of job {self.job_id}"
