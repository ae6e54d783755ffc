"""Request validation and response shapes of jobs, plans and algorithms (docs/api-contract.md)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from solvers.errors import ScenarioError
from solvers.given_placement import check_placement_options, parse_placement
from solvers.runner import ALGORITHMS, DEFAULT_ALGORITHMS

from ..catalog.models import Cluster, ModelSpec
from ..catalog.selectors import cluster_scenario_document
from ..catalog.serializers import unknown_key_errors
from ..core.documents import PlanDocumentField, ScenarioDocumentField, WorkloadSerializer
from ..core.errors import FieldErrors
from ..core.fields import FiniteFloatField, OwnedPrimaryKeyField, iso
from ..core.validation import check_server_count, nul_errors, parse_scenario_document
from .models import Job, Plan


class OptionsSerializer(serializers.Serializer):
    c = serializers.IntegerField(required=False, allow_null=True, min_value=1, max_value=1_000_000,
                                 help_text="fix the cache reservation c instead of tuning it")
    simulate_requests = serializers.IntegerField(required=False, min_value=0)
    seed = serializers.IntegerField(required=False, min_value=0, max_value=2**63 - 1)
    time_limit_s = FiniteFloatField(required=False, allow_null=True)
    calibration = serializers.ChoiceField(["measured", "datasheet"], required=False, default="measured")
    placement = serializers.ListField(
        child=serializers.JSONField(), required=False, allow_null=True, allow_empty=False,
        max_length=settings.MAX_SERVERS_PER_CLUSTER,      # one row per server at most
        help_text="plan on this layout (one you already run) instead of placing blocks: the plan document's "
                  "placement rows {server, start_block, num_blocks} (other fields ignored); for proposed, search "
                  "and optimal-allocation only")

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
    # "" for a job a user asked for directly (the schema must allow it)
    trigger = serializers.ChoiceField([("", "none"), *Job._meta.get_field("trigger").choices], read_only=True)

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
        # plans are stored as each algorithm finishes, so a running job has some too; lists prefetch them
        if "plans" in getattr(job, "_prefetched_objects_cache", {}):
            return job.plans.all()
        return Plan.objects.filter(job=job).defer("document").order_by("id")

    def generic_representation(self, job):
        return super().to_representation(job)


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

    def to_internal_value(self, data):
        # a misspelt key would otherwise be dropped and the job planned without it
        errors = unknown_key_errors(data, list(self.fields))
        if isinstance(data, dict) and isinstance(data.get("workload"), dict):
            errors += unknown_key_errors(data["workload"], list(WorkloadSerializer().fields), "workload.")
        if errors:
            raise FieldErrors(errors)
        return super().to_internal_value(data)

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
        if "placement" in options:
            _check_placement(options, attrs.get("algorithms") or list(DEFAULT_ALGORITHMS), scenario)
        attrs["cluster"], attrs["model"] = cluster, model
        attrs["input_scenario"] = doc
        attrs["resolved_scenario"] = scenario.to_dict()
        attrs["algorithms"] = attrs.get("algorithms") or list(DEFAULT_ALGORITHMS)
        attrs["options"] = options
        return attrs


def _check_placement(options: dict[str, Any], algorithms: list[str], scenario) -> None:
    """The same checks as ``python -m solvers plan --placement``, each error naming options.placement[i]."""
    errors = check_placement_options(algorithms, options.get("c"), "lower-bound", "options.placement")
    try:
        parse_placement(options["placement"], scenario, "options.placement")
    except ScenarioError as exc:
        errors += exc.errors
    if errors:
        raise FieldErrors([e.to_dict() for e in errors])


class CancelSerializer(serializers.Serializer):
    pass


class CurvePointSerializer(serializers.Serializer):
    arrival_rate = serializers.FloatField()
    response_time_lower_s = serializers.FloatField(allow_null=True)
    response_time_upper_s = serializers.FloatField(allow_null=True)
    stable = serializers.BooleanField()


class CurveSerializer(serializers.Serializer):
    points = CurvePointSerializer(many=True)


class CommandsSerializer(serializers.Serializer):
    commands = serializers.ListField(child=serializers.CharField())
    warnings = serializers.ListField(child=serializers.CharField(),
                                     help_text="flags left out and why (e.g. no scenario to size the cache from)")


class DisjointSerializer(serializers.Serializer):
    plan = serializers.DictField(help_text="the plan's chains: count, capacity, service rate")
    export = serializers.DictField(help_text="the server-disjoint chains the export keeps (closest_disjoint)")
    dropped_chains = serializers.ListField(child=serializers.IntegerField(),
                                           help_text="plan indices of chains left out because they share servers")


class ExportSerializer(serializers.Serializer):
    """One plan exported to one runtime (solvers/export/; docs/runtimes.md)."""

    runtime = serializers.ChoiceField(["petals", "vllm", "sglang", "llama.cpp", "parallax", "exo"])
    model_path = serializers.CharField(help_text="what the runtime loads (Hugging Face id, local path, GGUF file)")
    algorithm = serializers.CharField(allow_null=True)
    max_tokens = serializers.IntegerField(allow_null=True, help_text="the sequence length the KV sizing is for")
    commands = serializers.ListField(child=serializers.CharField(), help_text="commands to paste, one per server "
                                                                              "or engine, with `# on <host>` lines")
    warnings = serializers.ListField(child=serializers.CharField(),
                                     help_text="read before trusting the commands: capacity a runtime's rules "
                                               "lose (vLLM's effective capacity: every stage keeps as many KV "
                                               "blocks as its weakest), chains that share servers, guessed figures")
    notes = serializers.ListField(child=serializers.CharField())
    servers = serializers.ListField(child=serializers.DictField(), required=False,
                                    help_text="petals, parallax: per server its block range and arguments")
    engines = serializers.ListField(child=serializers.DictField(), required=False,
                                    help_text="vllm, sglang, llama.cpp: per chain (one engine) its stages, env, "
                                              "args, effective capacity")
    instances = serializers.ListField(child=serializers.DictField(), required=False, help_text="exo: per ring")
    disjoint = DisjointSerializer(required=False, help_text="one-engine-per-pipeline runtimes: the closest "
                                                            "server-disjoint plan that the export runs")
    text = serializers.CharField(help_text="the whole export as a shell script (warnings and notes as comments)")


class AlgorithmSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    default = serializers.BooleanField()


class ScenarioSummarySerializer(serializers.Serializer):
    name = serializers.CharField(allow_null=True)
    server_count = serializers.IntegerField()
    num_blocks = serializers.IntegerField(allow_null=True)
    arrival_rate = serializers.FloatField(allow_null=True)


def scenario_summary(doc: dict | None) -> dict[str, Any]:
    doc = doc or {}
    model, workload = doc.get("model") or {}, doc.get("workload") or {}
    return {"name": doc.get("name"), "server_count": len(doc.get("servers") or []),
            "num_blocks": model.get("num_blocks"), "arrival_rate": workload.get("arrival_rate")}


class JobSummarySerializer(JobSerializer):
    """A job in a list: its scenario as a summary (the whole document is on GET /jobs/{id}/)."""

    scenario = ScenarioSummarySerializer(read_only=True)

    def to_representation(self, job):
        out = super().to_representation(job)
        out["scenario"] = scenario_summary(job.scenario)
        return out
