"""Jobs (submit, poll, cancel), their plans (read, response-time curve, PETALS commands), the algorithms."""

from __future__ import annotations

import math
from typing import Any

from django.core.cache import cache
from django_filters import rest_framework as df
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from solvers import ScenarioError, parse_scenario
from solvers.runner import ALGORITHMS, DEFAULT_ALGORITHMS
from solvers.bounds import response_time_curve
from solvers.export import RUNTIMES, export_plan, export_text
from solvers.plan_format import PlanFormatError, read_chains

from ..core.errors import FieldErrors, scenario_error_to_validation
from ..core.filters import IdFilter, UtcDateTimeFilter
from ..core.views import OwnedQuerysetMixin, username_of
from . import selectors, serializers as s, services
from .models import Job, JobStatus, Plan

MAX_CURVE_POINTS = 500


class AlgorithmsView(APIView):
    @extend_schema(responses={200: s.AlgorithmSerializer(many=True)})
    def get(self, request):
        return Response([{"name": name, "description": text, "default": name in DEFAULT_ALGORITHMS}
                         for name, text in ALGORITHMS.items()])


class JobFilter(df.FilterSet):
    status = df.MultipleChoiceFilter(choices=JobStatus.choices)
    cluster = IdFilter()
    model = IdFilter()
    algorithm = df.CharFilter(method="filter_algorithm")
    created_after = UtcDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Job
        fields = ["status", "cluster", "model", "algorithm", "trigger", "created_after", "created_before"]

    def filter_algorithm(self, queryset, name, value):
        # algorithms is a JSON list; the quoted name matches one element exactly
        # (icontains works on both PostgreSQL and SQLite, JSON containment does not).
        if value not in ALGORITHMS:
            return queryset.none()
        return queryset.filter(algorithms__icontains=f'"{value}"')


FINISHED_JOB_CACHE_S = 300


class JobViewSet(OwnedQuerysetMixin, mixins.CreateModelMixin, mixins.RetrieveModelMixin, mixins.ListModelMixin,
                 viewsets.GenericViewSet):
    model = Job
    serializer_class = s.JobSerializer
    filterset_class = JobFilter
    ordering_fields = ["created_at", "started_at", "finished_at", "status"]
    ordering = ["-created_at"]

    def get_serializer_class(self):
        # a list carries each job's scenario as a summary; the document is on GET /jobs/{id}/
        return s.JobSummarySerializer if self.action == "list" else super().get_serializer_class()

    def owned_queryset(self):
        with_plans = self.action != "retrieve"      # retrieve loads them only for finished jobs
        return selectors.jobs_for(self.request.user, with_plans=with_plans).defer("input_scenario")

    def filter_queryset(self, queryset):
        # filters and ordering are for lists; a detail lookup by id need not build a FilterSet
        return super().filter_queryset(queryset) if self.action == "list" else queryset

    def retrieve(self, request, *args, **kwargs):
        # The hot path of polling clients. A finished job never changes again, so
        # its representation is cached (per process); the owner is checked on every hit.
        key = f"job-detail:{kwargs['pk']}"
        hit = cache.get(key)
        if hit is not None and hit[0] == request.user.pk:
            return Response(hit[1])
        job = self.get_object()
        data = self.get_serializer(job).data
        if job.is_terminal:
            cache.set(key, (job.owner_id, data), timeout=FINISHED_JOB_CACHE_S)
        return Response(data)

    @extend_schema(request=s.JobCreateSerializer, responses={201: s.JobSerializer})
    def create(self, request, *args, **kwargs):
        body = s.JobCreateSerializer(data=request.data, context=self.get_serializer_context())
        body.is_valid(raise_exception=True)
        data = body.validated_data
        job = services.job_create(request.user, scenario=data["resolved_scenario"],
                                  input_scenario=data["input_scenario"], algorithms=data["algorithms"],
                                  options=data["options"], cluster=data["cluster"], model=data["model"])
        return Response(s.JobSerializer(job).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: s.JobSerializer})
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        job = services.job_cancel(self.get_object(), by=username_of(request))
        return Response(self.get_serializer(self.get_queryset().get(pk=job.pk)).data)


class PlanFilter(df.FilterSet):
    job = IdFilter()
    cluster = IdFilter(field_name="job__cluster")

    class Meta:
        model = Plan
        fields = ["job", "algorithm", "cluster", "feasible"]


class PlanViewSet(OwnedQuerysetMixin, viewsets.ReadOnlyModelViewSet):
    model = Plan
    filterset_class = PlanFilter
    ordering_fields = ["mean_response_s", "p95_response_s", "total_capacity", "solve_time_s", "created_at"]
    ordering = ["-created_at"]

    def owned_queryset(self):
        qs = selectors.plans_for(self.request.user)
        return qs.defer("document") if self.action == "list" else qs

    def get_serializer_class(self):
        return s.PlanSummarySerializer if self.action == "list" else s.PlanDetailSerializer

    @extend_schema(parameters=[
        OpenApiParameter("rates", OpenApiTypes.STR, description="comma-separated arrival rates"),
        OpenApiParameter("points", {"type": "integer", "minimum": 1, "maximum": MAX_CURVE_POINTS},
                         description="evenly spaced rates up to the plan's capacity")],
        responses={200: s.CurveSerializer})
    @action(detail=True, methods=["get"])
    def curve(self, request, pk=None):
        # only the chains: a plan stored by an older version, without fields added since, keeps its curve
        try:
            chains = [ch.to_chain() for ch in read_chains(self.get_object().document)]
        except PlanFormatError as exc:
            raise scenario_error_to_validation(exc, "document") from None
        capacity_rate = sum(ch.capacity / ch.service_time_s for ch in chains)
        rates = _curve_rates(request.query_params, capacity_rate)
        return Response({"points": response_time_curve(chains, rates)})

    @extend_schema(
        parameters=[
            OpenApiParameter("runtime", {"type": "string", "enum": list(RUNTIMES)}, required=True,
                             description="the runtime to export to (docs/runtimes.md)"),
            OpenApiParameter("model_path", OpenApiTypes.STR,
                             description="what the runtime loads: a Hugging Face id or a local path (a GGUF file for "
                                         "llama.cpp); default: the model's name"),
            OpenApiParameter("initial_peers", OpenApiTypes.STR,
                             description="petals, parallax: multiaddr(s) of the swarm's bootstrap peers"),
            OpenApiParameter("new_swarm", OpenApiTypes.BOOL, description="petals: the first server starts a "
                                                                         "private swarm (--new_swarm)"),
            OpenApiParameter("gpu_memory_utilization", {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 1},
                             description="vllm (default 0.9)"),
            OpenApiParameter("mem_fraction_static", {"type": "number", "minimum": 0, "exclusiveMinimum": True, "maximum": 1},
                             description="sglang (default 0.9)"),
            OpenApiParameter("dist_init_port", {"type": "integer", "minimum": 1, "maximum": 65535},
                             description="sglang (default 5000)"),
            OpenApiParameter("rpc_port", {"type": "integer", "minimum": 1, "maximum": 65535},
                             description="llama.cpp rpc-server port (default 50052)"),
            OpenApiParameter("local_device", OpenApiTypes.STR, description="llama.cpp: the head's device (CUDA0)"),
        ],
        responses={200: s.ExportSerializer,
                   400: OpenApiResponse(description="{detail, errors: [{field, message}]}: an unknown runtime "
                                                    "(with the closest one), a bad option, or a plan the runtime "
                                                    "cannot run (no chains, infeasible)")},
        description="The plan as commands (and files) for one runtime, with the plan's cache sizing carried over. "
                    "Runtimes that run one engine per pipeline (vLLM, SGLang, llama.cpp, exo) get the closest "
                    "server-disjoint plan when chains share servers, said in warnings and `disjoint`.")
    @action(detail=True, methods=["get"])
    def export(self, request, pk=None):
        plan = self.get_object()
        opts = _export_options(request.query_params)
        scenario = None
        try:
            scenario = parse_scenario(plan.job.input_scenario)
        except ScenarioError:
            pass        # a plan stored under older rules: the plan document alone still fixes the split
        try:
            doc = export_plan(plan.document, opts.pop("runtime"), scenario, **opts)
        except ScenarioError as exc:
            raise scenario_error_to_validation(exc) from None
        return Response({**doc, "text": export_text(doc)})

    @extend_schema(responses={200: s.CommandsSerializer,
                              400: OpenApiResponse(description="{detail, errors: [{field, message}]}: the plan is "
                                                               "infeasible, nothing to launch")},
                   description="The plan's PETALS run_server commands, one per server holding blocks: the same "
                               "commands as export/?runtime=petals (cache size, dtype, throughput), without the "
                               "swarm flags.")
    @action(detail=True, methods=["get"], url_path="petals-commands")
    def petals_commands(self, request, pk=None):
        try:
            commands, warnings = services.petals_launch_commands(self.get_object())
        except ScenarioError as exc:
            raise scenario_error_to_validation(exc) from None
        return Response({"commands": commands, "warnings": warnings})


EXPORT_PARAMS = ("runtime", "model_path", "initial_peers", "new_swarm", "gpu_memory_utilization",
                 "mem_fraction_static", "dist_init_port", "rpc_port", "local_device")


def _export_options(params) -> dict[str, Any]:
    """Query parameters of GET /plans/{id}/export/, checked; errors name the parameter."""
    import difflib
    errors: list[dict[str, str]] = []
    for key in params:
        if key not in EXPORT_PARAMS and key != "format":
            close = difflib.get_close_matches(key, EXPORT_PARAMS, n=1)
            errors.append({"field": key, "message": f"unknown parameter; did you mean {close[0]!r}?" if close
                           else "unknown parameter; known: " + ", ".join(EXPORT_PARAMS)})
    runtime = params.get("runtime")
    if not runtime:
        errors.append({"field": "runtime", "message": f"is required: one of {', '.join(RUNTIMES)}"})
    elif runtime not in RUNTIMES:
        close = difflib.get_close_matches(runtime, RUNTIMES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        errors.append({"field": "runtime", "message": f"unknown runtime {runtime[:100]!r}{hint} (known: "
                                                      f"{', '.join(RUNTIMES)})"})
    opts: dict[str, Any] = {"runtime": runtime}
    for key in ("model_path", "initial_peers", "local_device"):
        value = params.get(key)
        if value:
            if len(value) > 2000 or "\x00" in value:
                errors.append({"field": key, "message": "must be at most 2000 characters, no NUL"})
            else:
                opts[key] = value
    # a number or boolean given empty ("?rpc_port=") is a bad value, not an absent one
    if "new_swarm" in params:
        if params["new_swarm"].lower() not in ("true", "false", "1", "0"):
            errors.append({"field": "new_swarm", "message": "must be true or false"})
        else:
            opts["new_swarm"] = params["new_swarm"].lower() in ("true", "1")
    for key in ("gpu_memory_utilization", "mem_fraction_static"):
        if key in params:
            try:
                value = float(params[key])
                if not (math.isfinite(value) and 0 < value <= 1):
                    raise ValueError
                opts[key] = value
            except ValueError:
                errors.append({"field": key, "message": "must be a number in (0, 1]"})
    for key in ("dist_init_port", "rpc_port"):
        if key in params:
            try:
                value = int(params[key])
                if not 1 <= value <= 65535:
                    raise ValueError
                opts[key] = value
            except ValueError:
                errors.append({"field": key, "message": "must be a port number (1..65535)"})
    if errors:
        raise FieldErrors(errors)
    return opts


def _curve_rates(params, capacity_rate: float) -> list[float]:
    if params.get("rates"):
        try:
            rates = [float(x) for x in params["rates"].split(",") if x.strip()]
        except ValueError:
            raise FieldErrors([{"field": "rates", "message": "must be comma-separated numbers"}]) from None
        if not rates or len(rates) > MAX_CURVE_POINTS or not all(math.isfinite(r) and r > 0 for r in rates):
            raise FieldErrors([{"field": "rates",
                                "message": f"must be 1 to {MAX_CURVE_POINTS} finite numbers > 0"}])
        return rates
    try:
        points = int(params.get("points", 20))
    except ValueError:
        raise FieldErrors([{"field": "points", "message": "must be an integer"}]) from None
    if not 1 <= points <= MAX_CURVE_POINTS:
        raise FieldErrors([{"field": "points", "message": f"must be in 1..{MAX_CURVE_POINTS}"}])
    top = capacity_rate if capacity_rate > 0 else 1.0
    # up to 98 % of the capacity: beyond it the bounds blow up
    return [top * 0.98 * (i + 1) / points for i in range(points)]
