"""Gateway keys: a key lets its holder call the OpenAI gateway for one cluster; stored as its digest."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from ..catalog.models import Cluster


class GatewayKey(models.Model):
    """``Authorization: Bearer <key>`` on /v1/ for one cluster; only ``serving.gateway.keys.key_digest`` is kept."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="gateway_keys")
    digest = models.CharField(max_length=80, unique=True)
    hint = models.CharField(max_length=12)         # the key's first characters, to tell keys apart
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # kept after revocation (the list shows it) so every full sync tells the store to forget it again
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"gateway key {self.hint}... for {self.cluster}"
