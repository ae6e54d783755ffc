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
    # Workload of the imported scenario, kept so export gives the document back;
    # also the workload of re-plans and of jobs that name the cluster but no workload.
    default_workload = models.JSONField(null=True, blank=True)

    # Re-planning settings (README "Re-planning"). min_gain and the thresholds are fractions.
    replan_delta = models.FloatField(default=0.01)              # seconds of response time per unit of switching cost
    replan_min_gain = models.FloatField(default=0.05)           # relative gain a re-plan needs to be adopted by itself
    replan_calibration_threshold = models.FloatField(default=0.2)   # relative change of a server figure
    replan_load_threshold = models.FloatField(default=0.2)      # relative drift of the observed arrival rate
    replan_on_server_change = models.BooleanField(default=True)
    replan_webhook_url = models.URLField(max_length=500, blank=True, default="")
    adopted_plan = models.ForeignKey("Plan", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    observed_arrival_rate = models.FloatField(null=True, blank=True)
    observed_window_s = models.FloatField(null=True, blank=True)
    observed_at = models.DateTimeField(null=True, blank=True)

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


class Trigger(models.TextChoices):
    """Why a re-plan job ran (blank: an ordinary planning job)."""

    MANUAL = "manual"
    SCHEDULE = "schedule"
    CALIBRATION = "calibration"
    SERVERS = "servers"
    LOAD = "load"


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


class PlanAdoption(models.Model):
    """One adoption of a plan for a cluster: the history of what ran, who or what chose it, and why."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="adoptions")
    # SET_NULL: the history outlives a deleted plan
    plan = models.ForeignKey(Plan, null=True, on_delete=models.SET_NULL, related_name="adoptions")
    previous_plan = models.ForeignKey(Plan, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    adopted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    trigger = models.CharField(max_length=16, blank=True, default="")   # Trigger of the re-plan; blank: by a user
    detail = models.CharField(max_length=500, blank=True, default="")
    gain = models.FloatField(null=True, blank=True)
    diff = models.JSONField(default=dict)
    webhook_status = models.IntegerField(null=True, blank=True)
    webhook_error = models.CharField(max_length=500, blank=True, default="")
    webhook_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"plan {self.plan_id} adopted for {self.cluster}"


class ReplanSchedule(models.Model):
    """A cluster's re-planning schedule; beat runs it through its own django-celery-beat PeriodicTask."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="replan_schedules")
    # CASCADE both ways: deleting the periodic task (e.g. in the admin) drops this row, and a
    # post_delete signal (signals.py) drops the periodic task of a deleted schedule or cluster.
    periodic_task = models.OneToOneField("django_celery_beat.PeriodicTask", on_delete=models.CASCADE,
                                         related_name="replan_schedule")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"re-plan schedule {self.pk} of {self.cluster}"
