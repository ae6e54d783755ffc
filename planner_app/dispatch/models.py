"""Dispatch tokens and aggregated observations of the live dispatcher."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from ..catalog.models import Cluster
from ..planning.models import Plan


class StoredSecret(models.Model):
    """What dispatch tokens and gateway keys share: issued by someone, kept as a digest, revocable.

    Subclasses add ``cluster``, ``digest`` and ``hint`` (the secret's first characters, to tell
    them apart).  A revoked row is kept (the list shows it) so the store can be told to forget it
    again on every full sync, even if the store was unreachable at the moment of revocation.
    """

    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True
        ordering = ["-created_at", "-id"]


class DispatchToken(StoredSecret):
    """A token that may only acquire/release/renew/read state for one cluster; stored as its SHA-256 digest."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="dispatch_tokens")
    digest = models.CharField(max_length=64, unique=True)
    hint = models.CharField(max_length=8)

    def __str__(self) -> str:
        return f"dispatch token {self.hint}... for {self.cluster}"


class DispatchObservation(models.Model):
    """What the dispatcher saw over one aggregation period (counters are deltas over the period)."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="dispatch_observations")
    plan = models.ForeignKey(Plan, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    period_s = models.FloatField()
    arrival_rate = models.FloatField(null=True, blank=True)     # per second, over the dispatcher's 60 s window
    arrivals = models.PositiveIntegerField(default=0)
    grants = models.PositiveIntegerField(default=0)
    releases = models.PositiveIntegerField(default=0)
    expiries = models.PositiveIntegerField(default=0)
    timeouts = models.PositiveIntegerField(default=0)
    mean_wait_s = models.FloatField(null=True, blank=True)      # since the dispatcher started counting
    queue_length = models.PositiveIntegerField(default=0)
    # [{"chain", "capacity", "in_progress", "predicted_service_time_s", "measured_service_time_s", "completed"}]
    chains = models.JSONField(default=list)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["cluster", "-created_at"], name="dispatch_obs_cluster_created")]
