"""Request validation and response shapes of liveness (docs/api-contract.md, docs/liveness.md)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..catalog.serializers import StrictKeysMixin, unknown_key_errors
from ..core.errors import FieldErrors
from ..core.fields import FiniteFloatField
from .models import SERVER_STATES, EventKind

MAX_GB = 1e6        # no device has a petabyte of memory: a bigger figure is a unit mistake


class HeartbeatSerializer(StrictKeysMixin, serializers.Serializer):
    """What a heartbeat says: alive ("up") or going away ("draining"), with figures of the moment."""

    state = serializers.ChoiceField(["up", "draining"],
                                    help_text="up: serving; draining: finishing what it has, take nothing new")
    free_memory_gb = FiniteFloatField(required=False, min_value=0, max_value=MAX_GB,
                                      help_text="memory free on the device now (10^9 bytes)")
    total_memory_gb = FiniteFloatField(required=False, min_value=0, max_value=MAX_GB,
                                       help_text="the device's memory (10^9 bytes)")
    device = serializers.CharField(required=False, max_length=200, allow_blank=True,
                                   help_text="which device the figures are of, e.g. 'NVIDIA H100 80GB HBM3'")
    agent = serializers.CharField(required=False, max_length=200, allow_blank=True,
                                  help_text="who sends it, e.g. 'chainplan-gpu-probe 0.1.0 watch'")

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise FieldErrors([{"field": "", "message": "a heartbeat must be a JSON object"}])
        return super().to_internal_value(data)


class EmptyBodySerializer(serializers.Serializer):
    """drain/ takes no fields: an empty body, or {}."""

    def to_internal_value(self, data):
        if data in (None, ""):
            return {}
        if not isinstance(data, dict):
            raise FieldErrors([{"field": "", "message": "the body must be empty or a JSON object with no keys"}])
        errors = unknown_key_errors(data, [])
        if errors:
            raise FieldErrors([{**e, "message": "unknown key; drain/ takes no fields"} for e in errors])
        return {}


class ServerStateAnswerSerializer(serializers.Serializer):
    server = serializers.CharField()
    state = serializers.ChoiceField(list(SERVER_STATES))
    since = serializers.DateTimeField(allow_null=True)
    drain_requested = serializers.BooleanField(help_text="an owner's drain holds (a heartbeat's 'up' is passed on "
                                                         "as 'draining' until DELETE drain/)")


class DrainSerializer(serializers.Serializer):
    requested_at = serializers.DateTimeField(allow_null=True, help_text="the owner's drain; null: the server "
                                                                        "drains itself (its heartbeat says so)")
    requested_by = serializers.CharField(allow_null=True)
    drained_at = serializers.DateTimeField(allow_null=True, help_text="when no lease in flight passed through it "
                                                                      "any more (it then leaves the plan)")


@extend_schema_field({"type": "object", "additionalProperties": True,
                      "description": "the last heartbeat's figures: free_memory_gb, total_memory_gb, device, agent, "
                                     "state (as sent)"})
class HeartbeatFiguresField(serializers.JSONField):
    pass


class ServerLivenessSerializer(serializers.Serializer):
    server = serializers.CharField()
    state = serializers.ChoiceField(list(SERVER_STATES))
    since = serializers.DateTimeField(allow_null=True, help_text="null: never reported on (counts as up)")
    cause = serializers.CharField(allow_blank=True)
    reported = serializers.BooleanField(help_text="whether anything (heartbeat, failure report, drain) was heard")
    last_heartbeat_at = serializers.DateTimeField(allow_null=True)
    heartbeat = HeartbeatFiguresField()
    drain = DrainSerializer(allow_null=True)
    in_plan = serializers.BooleanField(help_text="holds blocks of the adopted plan")


class MaskedChainSerializer(serializers.Serializer):
    chain = serializers.IntegerField(help_text="index in the adopted plan's chains")
    servers = serializers.ListField(child=serializers.CharField(), help_text="its servers that are not up")


class LastReplanSerializer(serializers.Serializer):
    job = serializers.IntegerField()
    status = serializers.CharField()
    at = serializers.DateTimeField()
    detail = serializers.CharField()


class LivenessServersSerializer(serializers.Serializer):
    cluster = serializers.IntegerField()
    adopted_plan = serializers.IntegerField(allow_null=True)
    servers = ServerLivenessSerializer(many=True)
    masked_chains = MaskedChainSerializer(many=True)
    chains = serializers.IntegerField(help_text="chains of the adopted plan")
    last_replan = LastReplanSerializer(allow_null=True, help_text="the last re-plan healing started")


class ReplanOfEventSerializer(serializers.Serializer):
    job = serializers.IntegerField()
    status = serializers.CharField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    detail = serializers.CharField(help_text="the job's trigger_detail: which server's death, drain or return")
    adopted = serializers.BooleanField(allow_null=True, help_text="null while it runs or when it failed")
    plan = serializers.IntegerField(allow_null=True, help_text="the plan it produced")
    why = serializers.CharField(allow_null=True, help_text="why it was adopted, kept as a candidate or failed")


class LivenessEventSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(EventKind.choices, help_text="transition: the server's state changed; "
                                                                "drained: a draining server has no lease in flight")
    server = serializers.CharField()
    prev = serializers.CharField(allow_blank=True, help_text="the state before ('' when the store did not say)")
    state = serializers.ChoiceField(list(SERVER_STATES))
    cause = serializers.CharField(allow_blank=True)
    at = serializers.DateTimeField()
    plan = serializers.IntegerField(source="plan_id", allow_null=True, help_text="the adopted plan at the time")
    chains = serializers.ListField(child=serializers.IntegerField(),
                                   help_text="that plan's chains through the server (masked or unmasked by it)")
    replan = serializers.SerializerMethodField(help_text="the re-plan this entry started, if any")

    @extend_schema_field(ReplanOfEventSerializer(allow_null=True))
    def get_replan(self, event):
        job = event.replan_job
        if job is None:
            return None
        outcome = job.replan_outcome or {}
        why = outcome.get("why") or (job.error if job.status == "failed" else None)
        return {"job": job.pk, "status": job.status, "created_at": serializers.DateTimeField().to_representation(
                    job.created_at),
                "finished_at": serializers.DateTimeField().to_representation(job.finished_at)
                if job.finished_at else None,
                "detail": job.trigger_detail, "adopted": outcome.get("adopted") if outcome else None,
                "plan": outcome.get("plan"), "why": why}
