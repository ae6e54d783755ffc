"""Request validation and response shapes of re-planning (docs/api-contract.md)."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from solvers.scenario import MAX_RATE, MAX_TIME_S

from ..core.documents import PlanDocumentField
from ..core.errors import FieldErrors
from ..core.fields import FiniteFloatField, StrictBooleanField, iso
from ..planning.serializers import PlanDetailSerializer, PlanSummarySerializer
from .selectors import schedule_description


class AdoptionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    cluster = serializers.IntegerField(source="cluster_id")
    plan = serializers.IntegerField(source="plan_id", allow_null=True)
    previous_plan = serializers.IntegerField(source="previous_plan_id", allow_null=True)
    adopted_by = serializers.SerializerMethodField(help_text="the user; null when a re-plan adopted it")
    trigger = serializers.CharField(help_text="what started the re-plan that adopted it; blank: a user")
    detail = serializers.CharField()
    gain = serializers.FloatField(allow_null=True)
    webhook_status = serializers.IntegerField(allow_null=True)
    webhook_error = serializers.CharField()
    webhook_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()

    def get_adopted_by(self, adoption) -> str | None:
        return adoption.adopted_by.get_username() if adoption.adopted_by_id else None


@extend_schema_field({"type": "object", "additionalProperties": True,
                      "description": "servers (blocks to load/drop), chains_added, chains_removed, "
                                     "capacity_changed, predicted, switching_cost"})
class DiffField(serializers.JSONField):
    pass


class AdoptionDetailSerializer(AdoptionSerializer):
    diff = DiffField()


class CandidateWorkloadSerializer(serializers.Serializer):
    digest = serializers.CharField(help_text="first 16 hex digits of the SHA-256 of the workload the plan was made "
                                             "for: candidates with the same digest were planned for the same load")
    arrival_rate = serializers.FloatField(allow_null=True, help_text="requests/s; null for a trace without a rate")
    trace_requests = serializers.IntegerField(allow_null=True, help_text="requests in the workload's trace; "
                                                                         "null without a trace")


class CandidateSerializer(PlanSummarySerializer):
    """A candidate with the workload it was planned for, so candidates for different loads are not compared."""

    workload = serializers.SerializerMethodField()
    same_workload_as_adopted = serializers.SerializerMethodField(
        help_text="planned for the same workload as the adopted plan; null when no plan is adopted")

    class Meta(PlanSummarySerializer.Meta):
        fields = PlanSummarySerializer.Meta.fields + ["workload", "same_workload_as_adopted"]
        read_only_fields = fields

    @extend_schema_field(CandidateWorkloadSerializer)
    def get_workload(self, plan):
        return self.context["workloads"].get(plan.job_id)

    @extend_schema_field(serializers.BooleanField(allow_null=True))
    def get_same_workload_as_adopted(self, plan):
        adopted, mine = self.context.get("adopted"), self.context["workloads"].get(plan.job_id)
        return None if adopted is None or mine is None else adopted["digest"] == mine["digest"]


class AdoptedPlanSerializer(serializers.Serializer):
    plan = PlanDetailSerializer(allow_null=True)
    adoption = AdoptionDetailSerializer(allow_null=True)


class DiffSerializer(serializers.Serializer):
    old = serializers.IntegerField(allow_null=True)
    new = serializers.IntegerField()
    servers = serializers.ListField(child=serializers.DictField())
    chains_added = serializers.ListField(child=serializers.DictField())
    chains_removed = serializers.ListField(child=serializers.DictField())
    capacity_changed = serializers.ListField(child=serializers.DictField())
    predicted = serializers.DictField()
    switching_cost = serializers.DictField()


class ApplySerializer(serializers.Serializer):
    plan = PlanSummarySerializer()
    model_name = serializers.CharField()
    petals_commands = serializers.ListField(child=serializers.CharField())
    plan_json = PlanDocumentField()
    missing_servers = serializers.ListField(child=serializers.CharField(),
                                            help_text="servers of the plan no longer in the cluster")


class ObservedLoadSerializer(serializers.Serializer):
    # the planner's own limits: a rate past MAX_RATE could not be planned for anyway
    arrival_rate = FiniteFloatField(min_value=0, max_value=MAX_RATE, help_text="observed requests per second")
    window_s = FiniteFloatField(required=False, allow_null=True, min_value=0, max_value=MAX_TIME_S,
                                help_text="length of the window it was measured over")

    def validate_arrival_rate(self, value):
        if value <= 0:
            raise serializers.ValidationError("must be > 0")
        return value


class ObservedLoadResultSerializer(serializers.Serializer):
    observed_arrival_rate = serializers.FloatField()
    window_s = serializers.FloatField(allow_null=True)
    observed_at = serializers.DateTimeField()
    planned_arrival_rate = serializers.FloatField(allow_null=True)
    drift = serializers.FloatField(allow_null=True)
    threshold = serializers.FloatField()
    replan_job = serializers.IntegerField(allow_null=True)


class ReplanRequestSerializer(serializers.Serializer):
    detail = serializers.CharField(required=False, allow_blank=True, max_length=400)


CRON_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")


PERIODS = ["seconds", "minutes", "hours", "days"]


PERIOD_SECONDS = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}


class ScheduleSerializer(serializers.Serializer):
    """A re-planning schedule: every N seconds/minutes/hours/days, or a 5-field cron line (UTC)."""

    id = serializers.IntegerField(read_only=True)
    kind = serializers.ChoiceField(["interval", "cron"])
    every = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=10**6)
    period = serializers.ChoiceField(PERIODS, required=False, allow_null=True)
    cron = serializers.CharField(required=False, allow_null=True, max_length=200,
                                 help_text="minute hour day-of-month month day-of-week, e.g. '0 */6 * * *'")
    enabled = StrictBooleanField(required=False, default=True)
    description = serializers.CharField(read_only=True)
    last_run_at = serializers.DateTimeField(read_only=True, allow_null=True)
    total_run_count = serializers.IntegerField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)

    def validate(self, attrs):
        kind = attrs.get("kind") or (self.instance and ("interval" if self.instance.periodic_task.interval_id
                                                        else "cron"))
        attrs["kind"] = kind
        errors = []
        if kind == "interval":
            every = attrs.get("every")
            period = attrs.get("period") or "minutes"
            if every is None:
                if self.instance is None or not self.instance.periodic_task.interval_id:
                    errors.append({"field": "every", "message": "is required for an interval schedule"})
                else:
                    every = self.instance.periodic_task.interval.every
            if every is not None and every * PERIOD_SECONDS[period] < settings.REPLAN_MIN_INTERVAL_S:
                errors.append({"field": "every",
                               "message": f"must be at least {settings.REPLAN_MIN_INTERVAL_S:g} seconds"})
            attrs["every"], attrs["period"] = every, period
        else:
            line = attrs.get("cron")
            if line is None and (self.instance is None or not self.instance.periodic_task.crontab_id):
                errors.append({"field": "cron", "message": "is required for a cron schedule"})
            elif line is not None:
                attrs["cron_fields"] = _cron_fields(line, errors)
        if errors:
            raise FieldErrors(errors)
        return attrs

    def to_representation(self, schedule):
        task = schedule.periodic_task
        c = task.crontab
        return {"id": schedule.pk, "kind": "interval" if task.interval_id else "cron",
                "every": task.interval.every if task.interval_id else None,
                "period": task.interval.period if task.interval_id else None,
                "cron": " ".join(getattr(c, f) for f in CRON_FIELDS) if c else None,
                "enabled": task.enabled, "description": schedule_description(schedule),
                "last_run_at": iso(task.last_run_at), "total_run_count": task.total_run_count,
                "created_at": iso(schedule.created_at)}


def _cron_fields(line: str, errors: list) -> dict[str, str] | None:
    from celery.schedules import crontab
    parts = line.split()
    if len(parts) != 5 or any("\x00" in p for p in parts):
        errors.append({"field": "cron", "message": "must have 5 fields: minute hour day-of-month month day-of-week"})
        return None
    fields = dict(zip(CRON_FIELDS, parts))
    try:
        crontab(**fields)
    except Exception as exc:  # noqa: BLE001 - celery raises ValueError or ParseException on bad syntax
        errors.append({"field": "cron", "message": f"not a valid cron line: {exc}"})
        return None
    return fields
