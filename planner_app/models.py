"""Persistent store: clusters and their servers, models, planning jobs and plans.

Every top-level object has an owner; queries in selectors.py always filter by it.
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models


class TimeStamped(models.Model):
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class ModelSpec(TimeStamped):
    """A served model: explicit sizes, or an architecture they were derived from."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="model_specs")
    name = models.CharField(max_length=200)
    num_blocks = models.PositiveIntegerField()
    block_size_gb = models.FloatField()
    cache_size_gb = models.FloatField()
    flops_per_token_gflops = models.FloatField(null=True, blank=True)
    architecture = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "model"

    def __str__(self) -> str:
        return f"{self.name} ({self.num_blocks} blocks)"


class Cluster(TimeStamped):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="clusters")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    model = models.ForeignKey(ModelSpec, null=True, blank=True, on_delete=models.SET_NULL, related_name="clusters")
    # Workload of the imported scenario, kept so export gives the document back.
    default_workload = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name


class Server(models.Model):
    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="servers")
    position = models.PositiveIntegerField(default=0)     # order in the user's list
    server_id = models.CharField(max_length=128)
    memory_gb = models.FloatField()
    comm_time_s = models.FloatField(null=True, blank=True)
    block_time_s = models.FloatField(null=True, blank=True)
    tflops = models.FloatField(null=True, blank=True)
    mem_bandwidth_gb_s = models.FloatField(null=True, blank=True)
    rtt_ms = models.FloatField(null=True, blank=True)
    link_bandwidth_gbps = models.FloatField(null=True, blank=True)
    # Denormalised pointer so listing clusters does not scan calibration history.
    latest_calibration = models.ForeignKey("ServerCalibration", null=True, blank=True, on_delete=models.SET_NULL,
                                           related_name="+")

    class Meta:
        ordering = ["cluster_id", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["cluster", "server_id"], name="unique_server_id_per_cluster")]

    def __str__(self) -> str:
        return self.server_id


class ServerCalibration(models.Model):
    """One probe report for one server: the raw report and the figures taken from it."""

    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="calibrations")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    model_name = models.CharField(max_length=200, blank=True, default="")
    figures = models.JSONField()          # CalibrationDoc fields of scenario.py
    report = models.JSONField()

    class Meta:
        ordering = ["-created_at", "-id"]


def _new_probe_key() -> str:
    return secrets.token_hex(20)


class ProbeToken(models.Model):
    """A token that may only report calibrations for one server."""

    key = models.CharField(max_length=40, unique=True, default=_new_probe_key)
    server = models.ForeignKey(Server, on_delete=models.CASCADE, related_name="probe_tokens")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"probe token for {self.server}"


class JobStatus(models.TextChoices):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


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
