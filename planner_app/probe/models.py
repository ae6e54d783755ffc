"""Probe reports: a server's measured figures, and the tokens that may report them."""

from __future__ import annotations

import secrets

from django.db import models

from ..catalog.models import Server


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
