"""Clusters, their servers, and served models: what there is to plan for.

Every top-level object has an owner; the selectors always filter by it.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from solvers.dispatch_policy import LIVE_POLICIES


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
    # Live dispatch (docs/dispatcher.md): the policy acquire/ uses when the request names none.
    dispatch_policy = models.CharField(max_length=8, default="jffc",
                                       choices=[(p, p) for p in LIVE_POLICIES])

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
    # [[concurrency, factor], ...] (scenario servers[].batch_slowdown), checked by BatchSlowdown.from_pairs
    batch_slowdown = models.JSONField(null=True, blank=True)
    # Denormalised pointer so listing clusters does not scan calibration history.
    latest_calibration = models.ForeignKey("ServerCalibration", null=True, blank=True, on_delete=models.SET_NULL,
                                           related_name="+")

    class Meta:
        ordering = ["cluster_id", "position", "id"]
        constraints = [models.UniqueConstraint(fields=["cluster", "server_id"], name="unique_server_id_per_cluster")]

    def __str__(self) -> str:
        return self.server_id
