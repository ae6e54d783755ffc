"""Liveness: each server's current state as the service knows it, the history of transitions, per-cluster polling."""

from __future__ import annotations

from django.db import models

from ..catalog.models import Cluster, Server
from ..planning.models import Job, Plan

# The dispatcher store's states (serving.dispatch.protocol.SERVER_STATES; a test keeps the two equal).
SERVER_STATES = ("up", "suspect", "down", "draining", "joining")
# A chain through a server in one of these states gets no new grants.
MASKING_STATES = frozenset({"suspect", "down", "draining", "joining"})
# What a re-plan may place blocks on: up, and suspect (a probation after one failure, not a verdict).
PLANNABLE_STATES = frozenset({"up", "suspect"})
# A server that comes back "up" from one of these has rejoined: its return may be worth a re-plan.
AWAY_STATES = frozenset({"down", "draining", "joining"})

STATE_CHOICES = [(s, s) for s in SERVER_STATES]
# The store's cause when a failure ban simply ran out: the server is up again "on trial", which is no sign of
# life.  Until a heartbeat (or the owner) says otherwise, healing treats it as still down.
BAN_OVER_CAUSE = "failure ban over"


class ServerLiveness(models.Model):
    """A server's current state (a server without a row has never been reported on: it counts as up)."""

    server = models.OneToOneField(Server, on_delete=models.CASCADE, related_name="liveness")
    state = models.CharField(max_length=10, choices=STATE_CHOICES, default="up")
    since = models.DateTimeField()
    cause = models.CharField(max_length=500, blank=True, default="")
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    heartbeat = models.JSONField(default=dict, blank=True)      # the last heartbeat's figures (free_memory_gb, ...)
    # an owner's drain (POST drain/) holds until the owner ends it (DELETE drain/), whatever heartbeats say
    drain_requested_at = models.DateTimeField(null=True, blank=True)
    drain_requested_by = models.CharField(max_length=150, blank=True, default="")
    # when a draining server had no lease in flight any more (it then leaves the plan)
    drained_at = models.DateTimeField(null=True, blank=True)
    # up again after being away (down, drained, joining): a re-plan may take it back once it stays up
    rejoined_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["server__cluster_id", "server__position", "server_id"]

    def __str__(self) -> str:
        return f"{self.server}: {self.state}"

    @property
    def on_trial(self) -> bool:
        """Up only because its failure ban ran out, and not heard from since."""
        return (self.state == "up" and self.cause == BAN_OVER_CAUSE
                and (self.last_heartbeat_at is None or self.last_heartbeat_at < self.since))


class EventKind(models.TextChoices):
    TRANSITION = "transition"      # the store changed the server's state (cause says why)
    DRAINED = "drained"            # a draining server has no lease in flight: it leaves the plan


class LivenessEvent(models.Model):
    """One entry of a cluster's liveness history: a state transition, or a drain that completed.

    ``replan_job`` is the re-plan this entry started (a server's death or return, a completed drain);
    the job's outcome says whether its plan was adopted.
    """

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="liveness_events")
    kind = models.CharField(max_length=12, choices=EventKind.choices, default=EventKind.TRANSITION)
    server = models.CharField(max_length=128)        # the server id: the history outlives a removed server
    prev = models.CharField(max_length=10, blank=True, default="")
    state = models.CharField(max_length=10, choices=STATE_CHOICES)
    cause = models.CharField(max_length=500, blank=True, default="")
    at = models.DateTimeField(db_index=True)
    store_event = models.CharField(max_length=64, blank=True, default="")   # the store's event id
    plan = models.ForeignKey(Plan, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # chains of the adopted plan (indices) through this server when it happened: masked or unmasked by it
    chains = models.JSONField(default=list, blank=True)
    replan_job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [models.Index(fields=["cluster", "-at", "-id"], name="liveness_event_cluster_at")]

    def __str__(self) -> str:
        return f"{self.server}: {self.prev or '?'} -> {self.state} ({self.cause})"


class ClusterLiveness(models.Model):
    """Per cluster: where the poller is in the store's event stream, the last healing re-plan, counters."""

    cluster = models.OneToOneField(Cluster, on_delete=models.CASCADE, related_name="liveness")
    store_key = models.CharField(max_length=300, blank=True, default="")   # which store the cursor is of
    cursor = models.JSONField(null=True, blank=True)                       # the last event id recorded
    replan_job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    replan_at = models.DateTimeField(null=True, blank=True)
    # what the last healing re-plan was for: [adopted plan id, the servers it planned on]; never twice the same
    replan_key = models.JSONField(null=True, blank=True)
    transitions = models.JSONField(default=dict, blank=True)     # state -> transitions into it (a counter)
    replans = models.PositiveIntegerField(default=0)             # healing re-plans started

    def __str__(self) -> str:
        return f"liveness of {self.cluster}"
