"""DRF serializers: request validation and response shapes of docs/api-contract.md.

Scenario rules are not restated here: documents go through the contract's own
parser (validation.py), and its field paths come back to the client.
"""

from __future__ import annotations

import math
from typing import Any

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from solvers.api import ALGORITHMS, DEFAULT_ALGORITHMS

from .errors import FieldErrors
from .models import Cluster, Job, ModelSpec, Plan
from .selectors import SERVER_FIGURES, cluster_scenario_document
from .validation import check_server_count, check_servers, derive_model, nul_errors, parse_scenario_document


class FiniteFloatField(serializers.FloatField):
    default_error_messages = {"non_finite": "must be a finite number"}

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not math.isfinite(value):
            self.fail("non_finite")
        return value


@extend_schema_field(OpenApiTypes.INT)
class OwnedPrimaryKeyField(serializers.PrimaryKeyRelatedField):
    """A reference to one of the requesting user's objects; others' ids read as not found."""

    def __init__(self, model, **kwargs):
        self.owned_model = model
        super().__init__(**kwargs)

    def get_queryset(self):
        return self.owned_model.objects.filter(owner=self.context["request"].user)


# ---------------------------------------------------------------------------
# documentation-only shapes of the scenario and plan documents (OpenAPI)
# ---------------------------------------------------------------------------

class ArchitectureDocSerializer(serializers.Serializer):
    preset = serializers.CharField(required=False)
    hidden_size = serializers.IntegerField(required=False)
    num_layers = serializers.IntegerField(required=False)
    num_heads = serializers.IntegerField(required=False)
    num_kv_heads = serializers.IntegerField(required=False)
    ffn_size = serializers.IntegerField(required=False)
    gated_ffn = serializers.BooleanField(required=False)
    head_dim = serializers.IntegerField(required=False)
    dtype = serializers.ChoiceField(["fp32", "fp16", "bf16", "int8", "nf4"], required=False)
    kv_dtype = serializers.ChoiceField(["fp32", "fp16", "bf16", "int8"], required=False)
    max_seq_len = serializers.IntegerField(required=False)


class ScenarioModelDocSerializer(serializers.Serializer):
    name = serializers.CharField(required=False)
    num_blocks = serializers.IntegerField(required=False)
    block_size_gb = serializers.FloatField(required=False)
    cache_size_gb = serializers.FloatField(required=False)
    flops_per_token_gflops = serializers.FloatField(required=False)
    architecture = ArchitectureDocSerializer(required=False)


class CalibrationDocSerializer(serializers.Serializer):
    memory_gb = serializers.FloatField(required=False)
    comm_time_s = serializers.FloatField(required=False)
    block_time_s = serializers.FloatField(required=False)
    rtt_ms = serializers.FloatField(required=False)


class ScenarioServerDocSerializer(serializers.Serializer):
    id = serializers.CharField()
    memory_gb = serializers.FloatField()
    comm_time_s = serializers.FloatField(required=False)
    block_time_s = serializers.FloatField(required=False)
    tflops = serializers.FloatField(required=False)
    mem_bandwidth_gb_s = serializers.FloatField(required=False)
    rtt_ms = serializers.FloatField(required=False)
    link_bandwidth_gbps = serializers.FloatField(required=False)
    calibration = CalibrationDocSerializer(required=False)


class WorkloadSerializer(serializers.Serializer):
    arrival_rate = FiniteFloatField(required=False, help_text="Poisson arrival rate (requests/s)")
    target_load = FiniteFloatField(required=False)
    input_tokens = FiniteFloatField(required=False)
    output_tokens = FiniteFloatField(required=False)
    max_tokens = serializers.IntegerField(required=False)
    trace = serializers.ListField(
        child=serializers.JSONField(), required=False, max_length=1_000_000,
        help_text="per request [arrival_s, input_tokens, output_tokens] or an object with those keys")


class ScenarioDocSerializer(serializers.Serializer):
    name = serializers.CharField(required=False)
    model = ScenarioModelDocSerializer()
    servers = ScenarioServerDocSerializer(many=True)
    workload = WorkloadSerializer()


@extend_schema_field(ScenarioDocSerializer)
class ScenarioDocumentField(serializers.JSONField):
    """A scenario document of scenario-format.md (validated by the solver's parser)."""

    def to_internal_value(self, data):
        # No generic JSON check here: the scenario parser names the field of a
        # non-finite number (servers[0].memory_gb) where JSONField would only say "invalid".
        return data


@extend_schema_field({"type": "object", "additionalProperties": True,
                      "description": "plan document of scenario-format.md"})
class PlanDocumentField(serializers.JSONField):
    pass


# ---------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------

class ModelSpecSerializer(serializers.ModelSerializer):
    num_blocks = serializers.IntegerField(required=False)
    block_size_gb = FiniteFloatField(required=False)
    cache_size_gb = FiniteFloatField(required=False)
    flops_per_token_gflops = FiniteFloatField(required=False, allow_null=True)
    architecture = serializers.JSONField(required=False, allow_null=True)
    max_tokens = serializers.IntegerField(required=False, write_only=True, min_value=1,
                                          help_text="tokens to size the KV cache for when deriving cache_size_gb")

    class Meta:
        model = ModelSpec
        fields = ["id", "name", "num_blocks", "block_size_gb", "cache_size_gb", "flops_per_token_gflops",
                  "architecture", "max_tokens", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate(self, attrs):
        instance: ModelSpec | None = self.instance
        max_tokens = attrs.pop("max_tokens", None)
        numbers = ("num_blocks", "block_size_gb", "cache_size_gb", "flops_per_token_gflops")
        arch = attrs["architecture"] if "architecture" in attrs else (instance.architecture if instance else None)
        doc: dict[str, Any] = {"name": attrs.get("name", instance.name if instance else "model")}
        for key in numbers:
            if attrs.get(key) is not None:
                doc[key] = attrs[key]
            elif instance is not None and "architecture" not in attrs and key not in attrs:
                # unchanged architecture: keep the stored numbers; a new one re-derives them
                value = getattr(instance, key)
                if value is not None:
                    doc[key] = value
        if arch is not None:
            doc["architecture"] = arch
        resolved = derive_model(doc, max_tokens)
        attrs.update(resolved)
        attrs["architecture"] = arch
        return attrs


class DeriveModelSerializer(serializers.Serializer):
    architecture = serializers.JSONField()
    max_tokens = serializers.IntegerField(required=False, min_value=1)


class DerivedSizesSerializer(serializers.Serializer):
    num_blocks = serializers.IntegerField()
    block_size_gb = serializers.FloatField()
    cache_size_gb = serializers.FloatField()
    flops_per_token_gflops = serializers.FloatField(allow_null=True)


class PresetSerializer(serializers.Serializer):
    name = serializers.CharField()
    architecture = serializers.DictField()


# ---------------------------------------------------------------------------
# clusters
# ---------------------------------------------------------------------------

class CalibrationSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    model_name = serializers.CharField()
    figures = serializers.DictField()


class ServerSerializer(serializers.Serializer):
    server_id = serializers.CharField(max_length=128)
    memory_gb = FiniteFloatField()
    comm_time_s = FiniteFloatField(required=False, allow_null=True)
    block_time_s = FiniteFloatField(required=False, allow_null=True)
    tflops = FiniteFloatField(required=False, allow_null=True)
    mem_bandwidth_gb_s = FiniteFloatField(required=False, allow_null=True)
    rtt_ms = FiniteFloatField(required=False, allow_null=True)
    link_bandwidth_gbps = FiniteFloatField(required=False, allow_null=True)
    latest_calibration = serializers.SerializerMethodField()

    @extend_schema_field(CalibrationSummarySerializer(allow_null=True))
    def get_latest_calibration(self, server) -> dict[str, Any] | None:
        cal = server.latest_calibration
        if cal is None:
            return None
        return {"id": cal.id, "created_at": cal.created_at.isoformat(), "model_name": cal.model_name,
                "figures": cal.figures}


REPLAN_FIELDS = ["replan_delta", "replan_min_gain", "replan_calibration_threshold", "replan_load_threshold",
                 "replan_on_server_change", "replan_webhook_url"]


class ClusterSerializer(serializers.ModelSerializer):
    model = OwnedPrimaryKeyField(ModelSpec, required=False, allow_null=True)
    servers = ServerSerializer(many=True, required=False)
    server_count = serializers.SerializerMethodField()
    default_workload = WorkloadSerializer(required=False, allow_null=True,
                                          help_text="workload of re-plans and of jobs that give none")
    replan_delta = FiniteFloatField(required=False, min_value=0,
                                    help_text="seconds of predicted response time one unit of switching cost is worth")
    replan_min_gain = FiniteFloatField(required=False, min_value=0,
                                       help_text="fraction of the adopted plan's predicted mean response time a "
                                                 "re-plan must save to be adopted by itself (0.05 = 5 %)")
    replan_calibration_threshold = FiniteFloatField(required=False, min_value=0,
                                                    help_text="relative change of a server figure that re-plans")
    replan_load_threshold = FiniteFloatField(required=False, min_value=0,
                                             help_text="relative drift of the observed arrival rate that re-plans")
    replan_webhook_url = serializers.URLField(required=False, allow_blank=True, max_length=500)

    class Meta:
        model = Cluster
        fields = ["id", "name", "description", "model", "servers", "server_count", "default_workload",
                  *REPLAN_FIELDS, "adopted_plan", "observed_arrival_rate", "observed_at", "created_at", "updated_at"]
        read_only_fields = ["id", "adopted_plan", "observed_arrival_rate", "observed_at", "created_at", "updated_at"]

    def validate_default_workload(self, workload):
        if workload is None:
            return None
        errors = nul_errors(workload.get("trace"), "trace", [])
        if errors:
            raise serializers.ValidationError({e["field"]: [e["message"]] for e in errors})
        return {k: v for k, v in workload.items() if v is not None}

    def get_server_count(self, cluster) -> int:
        return len(cluster.servers.all())

    def to_internal_value(self, data):
        if isinstance(data, dict) and isinstance(data.get("servers"), list):
            check_server_count(len(data["servers"]), "servers")   # before validating each one
        return super().to_internal_value(data)

    def validate_servers(self, servers):
        if servers:
            docs = [{"id": s["server_id"], **{k: s[k] for k in SERVER_FIGURES if s.get(k) is not None}}
                    for s in servers]
            check_servers(docs, field="")   # paths relative to this field
        return servers


class ScenarioBodySerializer(serializers.Serializer):
    scenario = ScenarioDocumentField()

    def validate_scenario(self, doc):
        parse_scenario_document(doc, "")      # paths relative to this field
        return doc


# ---------------------------------------------------------------------------
# jobs and plans
# ---------------------------------------------------------------------------

class OptionsSerializer(serializers.Serializer):
    c = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=1_000_000,
                                 help_text="fix the cache reservation c instead of tuning it")
    simulate_requests = serializers.IntegerField(required=False, min_value=0)
    seed = serializers.IntegerField(required=False, min_value=0, max_value=2**63 - 1)
    time_limit_s = FiniteFloatField(required=False, allow_null=True)
    calibration = serializers.ChoiceField(["measured", "datasheet"], required=False, default="measured")

    def to_internal_value(self, data):
        unknown = sorted(set(data) - set(self.fields)) if isinstance(data, dict) else []
        errors: dict = {}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            errors = dict(exc.detail)
        # report unknown options together with the other problems, in one answer
        errors.update({key: [f"unknown option; known: {', '.join(self.fields)}"] for key in unknown})
        if errors:
            raise serializers.ValidationError(errors)
        return value

    def validate_simulate_requests(self, value):
        if value > settings.MAX_SIMULATE_REQUESTS:
            raise serializers.ValidationError(f"must be <= {settings.MAX_SIMULATE_REQUESTS}")
        return value

    def validate_time_limit_s(self, value):
        if value is not None and not (0 < value <= settings.MAX_JOB_TIME_LIMIT_S):
            raise serializers.ValidationError(f"must be > 0 and <= {settings.MAX_JOB_TIME_LIMIT_S:g}")
        return value


class ProgressSerializer(serializers.Serializer):
    fraction = serializers.FloatField()
    algorithm = serializers.CharField(allow_null=True)
    message = serializers.CharField()


class PlanSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = Plan
        fields = ["id", "job", "algorithm", "feasible", "mean_response_s", "p95_response_s", "total_capacity",
                  "solve_time_s", "created_at"]
        read_only_fields = fields


class PlanDetailSerializer(PlanSummarySerializer):
    document = PlanDocumentField(read_only=True)

    class Meta(PlanSummarySerializer.Meta):
        fields = PlanSummarySerializer.Meta.fields + ["document"]
        read_only_fields = fields


class JobSerializer(serializers.ModelSerializer):
    progress = serializers.SerializerMethodField()
    scenario = ScenarioDocumentField(read_only=True)
    plans = PlanSummarySerializer(many=True, read_only=True)

    class Meta:
        model = Job
        fields = ["id", "status", "progress", "cluster", "model", "scenario", "algorithms", "options", "error",
                  "worker", "reason", "attempts", "trigger", "trigger_detail", "previous_plan", "replan_outcome",
                  "created_at", "started_at", "finished_at", "plans"]
        read_only_fields = fields

    @extend_schema_field(ProgressSerializer)
    def get_progress(self, job) -> dict[str, Any]:
        return {"fraction": job.progress_fraction, "algorithm": job.progress_algorithm,
                "message": job.progress_message}

    def to_representation(self, job):
        # Hand-written for the polling hot path (DRF's field machinery costs ~2 ms a job);
        # test_api checks it equals the generic representation field by field.
        return {
            "id": job.pk, "status": job.status, "progress": self.get_progress(job),
            "cluster": job.cluster_id, "model": job.model_id, "scenario": job.scenario,
            "algorithms": job.algorithms, "options": job.options, "error": job.error, "worker": job.worker,
            "reason": job.reason, "attempts": job.attempts, "trigger": job.trigger,
            "trigger_detail": job.trigger_detail, "previous_plan": job.previous_plan_id,
            "replan_outcome": job.replan_outcome, "created_at": iso(job.created_at),
            "started_at": iso(job.started_at), "finished_at": iso(job.finished_at),
            "plans": [{"id": p.pk, "job": p.job_id, "algorithm": p.algorithm, "feasible": p.feasible,
                       "mean_response_s": p.mean_response_s, "p95_response_s": p.p95_response_s,
                       "total_capacity": p.total_capacity, "solve_time_s": p.solve_time_s,
                       "created_at": iso(p.created_at)} for p in self._plans(job)],
        }

    @staticmethod
    def _plans(job):
        # plans are written in the transaction that ends a job: an unfinished one has none (no query)
        return job.plans.all() if job.is_terminal else ()

    def generic_representation(self, job):
        return super().to_representation(job)


def iso(value) -> str | None:
    """A datetime as DRF renders it (ISO 8601, UTC as 'Z')."""
    return None if value is None else _DATETIME.to_representation(value)


_DATETIME = serializers.DateTimeField()


class JobCreateSerializer(serializers.Serializer):
    """Either cluster + model + workload, or a whole scenario document."""

    cluster = OwnedPrimaryKeyField(Cluster, required=False, allow_null=True)
    model = OwnedPrimaryKeyField(ModelSpec, required=False, allow_null=True,
                                 help_text="defaults to the cluster's model")
    workload = WorkloadSerializer(required=False)
    scenario = ScenarioDocumentField(required=False)
    algorithms = serializers.ListField(child=serializers.CharField(max_length=64), required=False,
                                       allow_empty=False, help_text="default: " + ", ".join(DEFAULT_ALGORITHMS))
    options = OptionsSerializer(required=False)

    def validate_algorithms(self, names):
        if len(names) > settings.MAX_ALGORITHMS_PER_JOB:
            raise serializers.ValidationError(f"at most {settings.MAX_ALGORITHMS_PER_JOB} algorithms")
        errors = {}
        for i, name in enumerate(names):
            if name not in ALGORITHMS:
                errors[i] = [f"unknown algorithm {name!r}; known: {', '.join(sorted(ALGORITHMS))}"]
        if errors:
            raise serializers.ValidationError(errors)
        return list(dict.fromkeys(names))      # keep order, drop repeats

    def validate_workload(self, workload):
        errors = nul_errors(workload.get("trace"), "trace", [])
        if errors:
            raise serializers.ValidationError({e["field"]: [e["message"]] for e in errors})
        return workload

    def validate(self, attrs):
        options = dict(attrs.get("options") or {})
        options = {k: v for k, v in options.items() if v is not None}
        # the job records the options it ran with, defaults included, so it can be reproduced
        options.setdefault("calibration", "measured")
        options.setdefault("simulate_requests", settings.DEFAULT_SIMULATE_REQUESTS)
        options.setdefault("seed", 1)
        if "scenario" in attrs:
            clash = [k for k in ("cluster", "model", "workload") if attrs.get(k) is not None]
            if clash:
                raise FieldErrors([{"field": k, "message": "give either a scenario or a cluster with a workload, "
                                                           "not both"} for k in clash])
            doc = attrs["scenario"]
            scenario = parse_scenario_document(doc, "scenario")
            cluster = model = None
        else:
            cluster = attrs.get("cluster")
            if attrs.get("workload") is None and cluster is not None and cluster.default_workload:
                attrs["workload"] = cluster.default_workload      # the workload the cluster was imported with
            missing = [{"field": k, "message": "is required (or give a scenario)"}
                       for k in ("cluster", "workload") if attrs.get(k) is None]
            if missing:
                raise FieldErrors(missing)
            model = attrs.get("model") or cluster.model
            if model is None:
                raise FieldErrors([{"field": "model", "message": "is required: the cluster has no model"}])
            servers = list(cluster.servers.all())
            if not servers:
                raise FieldErrors([{"field": "cluster", "message": "the cluster has no servers"}])
            check_server_count(len(servers), "cluster")
            workload = {k: v for k, v in attrs["workload"].items() if v is not None}
            doc = cluster_scenario_document(cluster, model, workload,
                                            measured=options["calibration"] == "measured")
            scenario = parse_scenario_document(doc, "")
        attrs["cluster"], attrs["model"] = cluster, model
        attrs["input_scenario"] = doc
        attrs["resolved_scenario"] = scenario.to_dict()
        attrs["algorithms"] = attrs.get("algorithms") or list(DEFAULT_ALGORITHMS)
        attrs["options"] = options
        return attrs


class CancelSerializer(serializers.Serializer):
    pass


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField()


class UsernameSerializer(serializers.Serializer):
    username = serializers.CharField()


class MeSerializer(serializers.Serializer):
    username = serializers.CharField(allow_null=True, help_text="null when signed out")


class CurvePointSerializer(serializers.Serializer):
    arrival_rate = serializers.FloatField()
    response_time_lower_s = serializers.FloatField(allow_null=True)
    response_time_upper_s = serializers.FloatField(allow_null=True)
    stable = serializers.BooleanField()


class CurveSerializer(serializers.Serializer):
    points = CurvePointSerializer(many=True)


class CommandsSerializer(serializers.Serializer):
    commands = serializers.ListField(child=serializers.CharField())


class AlgorithmSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    default = serializers.BooleanField()


class ProbeReportAcceptedSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    accepted = serializers.BooleanField()


# ---------------------------------------------------------------------------
# re-planning
# ---------------------------------------------------------------------------

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
    arrival_rate = FiniteFloatField(min_value=0, help_text="observed requests per second")
    window_s = FiniteFloatField(required=False, allow_null=True, min_value=0,
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
    enabled = serializers.BooleanField(required=False, default=True)
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
        from .services import schedule_description
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
