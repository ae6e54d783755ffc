"""Gateway keys: a key lets its holder call the OpenAI gateway for one cluster; stored as its digest."""

from __future__ import annotations

from django.db import models

from ..catalog.models import Cluster
from ..dispatch.models import StoredSecret


class GatewayKey(StoredSecret):
    """``Authorization: Bearer <key>`` on /v1/ for one cluster; only ``serving.gateway.keys.key_digest`` is kept."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="gateway_keys")
    digest = models.CharField(max_length=80, unique=True)
    hint = models.CharField(max_length=12)

    def __str__(self) -> str:
        return f"gateway key {self.hint}... for {self.cluster}"
