"""REST views of docs/api-contract.md: thin, delegating to selectors (reads) and services (writes)."""

from __future__ import annotations

import dataclasses
import math
import shlex

from django.conf import settings
from django.core.cache import cache
from django.contrib.auth import authenticate, login, logout
from django.db import connection
from django.http import FileResponse, HttpResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_protect, ensure_csrf_cookie
from django_filters import rest_framework as df
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, permissions, serializers as drf_serializers, status, viewsets
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from solvers.api import ALGORITHMS, DEFAULT_ALGORITHMS
from solvers.bounds import response_time_curve
from solvers.chains import Chain
from solvers.presets import PRESETS

from . import selectors, serializers as s, services
from .authentication import CachedTokenAuthentication, ProbeTokenAuthentication
from .errors import FieldErrors
from .models import Cluster, Job, JobStatus, ModelSpec, Plan, Trigger
from .validation import derive_model, nul_errors


class OwnedQuerysetMixin:
    """get_queryset through a selector scoped to request.user.

    drf-spectacular builds the schema without a user (swagger_fake_view); it gets an empty queryset.
    """

    model = None

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return self.model.objects.none()
        return self.owned_queryset()


def _check_password(request):
    """The active user named by a {"username", "password"} body, or a 400."""
    body = s.TokenRequestSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    user = authenticate(request, **body.validated_data)
    if user is None or not user.is_active:
        raise FieldErrors([{"field": "", "message": "unable to log in with the given username and password"}])
    return user


def _username(request) -> str:
    return request.user.get_username()


# ---------------------------------------------------------------------------
# auth
# ---------------------------------------------------------------------------

class TokenView(APIView):
    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(request=s.TokenRequestSerializer, responses={200: s.TokenSerializer}, auth=[])
    def post(self, request):
        user = _check_password(request)
        _, token = services.user_ensure(user.get_username())
        return Response({"token": token})


@method_decorator(csrf_protect, name="dispatch")
class LoginView(APIView):
    """Session login for the browser; CSRF-protected (GET /auth/csrf/ first)."""

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(request=s.TokenRequestSerializer, responses={200: s.UsernameSerializer}, auth=[])
    def post(self, request):
        user = _check_password(request)
        login(request, user)
        return Response({"username": user.get_username()})


class LogoutView(APIView):
    permission_classes = [permissions.AllowAny]

    @extend_schema(request=None, responses={204: None})
    def post(self, request):
        logout(request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    # Anyone may ask: signed out is an answer ({"username": null}), not an error the browser logs.
    authentication_classes = [SessionAuthentication, CachedTokenAuthentication]
    permission_classes = [permissions.AllowAny]

    @extend_schema(responses={200: s.MeSerializer})
    def get(self, request):
        return Response({"username": _username(request) if request.user.is_authenticated else None})


@method_decorator(ensure_csrf_cookie, name="dispatch")
class CsrfView(APIView):
    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(responses={204: None}, auth=[])
    def get(self, request):
        return Response(status=status.HTTP_204_NO_CONTENT)


class HealthView(APIView):
    """Liveness for load balancers and docker health checks (database reachable)."""

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(responses={200: inline_serializer("Health", {"status": drf_serializers.CharField()})}, auth=[])
    def get(self, request):
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return Response({"status": "ok"})


# ---------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------

class ModelSpecViewSet(OwnedQuerysetMixin, viewsets.ModelViewSet):
    model = ModelSpec
    serializer_class = s.ModelSpecSerializer
    ordering_fields = ["created_at", "name", "num_blocks"]
    filterset_fields = {"name": ["exact", "icontains"]}

    def owned_queryset(self):
        return selectors.models_for(self.request.user)

    def perform_create(self, serializer):
        serializer.instance = services.model_save(self.request.user, serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = services.model_save(self.request.user, serializer.validated_data,
                                                  instance=serializer.instance)

    @extend_schema(request=s.DeriveModelSerializer, responses={200: s.DerivedSizesSerializer})
    @action(detail=False, methods=["post"])
    def derive(self, request):
        body = s.DeriveModelSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        arch = body.validated_data["architecture"]
        if not isinstance(arch, dict):
            raise FieldErrors([{"field": "architecture", "message": "must be an object"}])
        return Response(derive_model({"name": "derive", "architecture": arch},
                                     body.validated_data.get("max_tokens")))

    @extend_schema(responses={200: s.PresetSerializer(many=True)})
    @action(detail=False, methods=["get"], pagination_class=None, filter_backends=[])
    def presets(self, request):
        return Response([{"name": name, "architecture": dataclasses.asdict(arch)}
                         for name, arch in sorted(PRESETS.items())])


# ---------------------------------------------------------------------------
# clusters
# ---------------------------------------------------------------------------

SCHEDULE_ID = OpenApiParameter("schedule_id", OpenApiTypes.INT, OpenApiParameter.PATH)


class ClusterViewSet(OwnedQuerysetMixin, viewsets.ModelViewSet):
    model = Cluster
    serializer_class = s.ClusterSerializer
    ordering_fields = ["created_at", "updated_at", "name"]
    filterset_fields = {"name": ["exact", "icontains"], "model": ["exact"]}

    def owned_queryset(self):
        return selectors.clusters_for(self.request.user)

    def _reload(self, cluster):
        return selectors.clusters_for(self.request.user).get(pk=cluster.pk)

    def perform_create(self, serializer):
        cluster = services.cluster_save(self.request.user, dict(serializer.validated_data))
        serializer.instance = self._reload(cluster)

    def perform_update(self, serializer):
        cluster = services.cluster_save(self.request.user, dict(serializer.validated_data),
                                        instance=serializer.instance)
        serializer.instance = self._reload(cluster)

    @extend_schema(request=s.ScenarioBodySerializer, responses={201: s.ClusterSerializer})
    @action(detail=False, methods=["post"], url_path="import")
    def import_scenario(self, request):
        body = s.ScenarioBodySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        cluster = services.cluster_import(request.user, body.validated_data["scenario"])
        return Response(self.get_serializer(self._reload(cluster)).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[OpenApiParameter("model", OpenApiTypes.INT, description="default: the cluster's model"),
                               OpenApiParameter("arrival_rate", OpenApiTypes.FLOAT,
                                                description="default: the imported workload's")],
                   responses={200: s.ScenarioDocSerializer})
    @action(detail=True, methods=["get"])
    def export(self, request, pk=None):
        cluster = self.get_object()
        errors = []
        model = cluster.model
        if request.query_params.get("model"):
            try:
                model = selectors.models_for(request.user).get(pk=int(request.query_params["model"]))
            except (ValueError, selectors.ModelSpec.DoesNotExist):
                errors.append({"field": "model", "message": "no such model"})
        workload = dict(cluster.default_workload or {})
        if request.query_params.get("arrival_rate"):
            try:
                rate = float(request.query_params["arrival_rate"])
                if not (math.isfinite(rate) and rate > 0):
                    raise ValueError
                workload["arrival_rate"] = rate
                workload.pop("trace", None)
            except ValueError:
                errors.append({"field": "arrival_rate", "message": "must be a finite number > 0"})
        if errors:
            raise FieldErrors(errors)
        return Response(selectors.cluster_scenario_document(cluster, model, workload or None))

    # -- re-planning -----------------------------------------------------------

    @extend_schema(responses={200: s.AdoptedPlanSerializer})
    @action(detail=True, methods=["get"], url_path="adopted-plan")
    def adopted_plan(self, request, pk=None):
        plan, adoption = selectors.adopted_plan_of(self.get_object())
        return Response({"plan": s.PlanDetailSerializer(plan).data if plan else None,
                         "adoption": s.AdoptionDetailSerializer(adoption).data if adoption else None})

    @extend_schema(responses={200: s.AdoptionSerializer(many=True)})
    @action(detail=True, methods=["get"], filter_backends=[])
    def adoptions(self, request, pk=None):
        qs = selectors.adoptions_for(request.user, self.get_object())
        page = self.paginate_queryset(qs)
        return self.get_paginated_response(s.AdoptionSerializer(page, many=True).data)

    @extend_schema(responses={200: s.PlanSummarySerializer(many=True)})
    @action(detail=True, methods=["get"], filter_backends=[])
    def candidates(self, request, pk=None):
        qs = selectors.candidates_for(request.user, self.get_object())
        page = self.paginate_queryset(qs)
        return self.get_paginated_response(s.PlanSummarySerializer(page, many=True).data)

    @extend_schema(parameters=[OpenApiParameter("initial_peers", OpenApiTypes.STR,
                                                description="multiaddr(s) of the swarm's bootstrap peers")],
                   responses={200: s.ApplySerializer})
    @action(detail=True, methods=["get"])
    def apply(self, request, pk=None):
        from solvers.export import petals_commands
        cluster = self.get_object()
        plan, _ = selectors.adopted_plan_of(cluster)
        if plan is None:
            raise NotFound(f"cluster {cluster.pk} has no adopted plan; adopt one first")
        peers = request.query_params.get("initial_peers") or None
        if peers is not None and (len(peers) > 2000 or "\x00" in peers):
            raise FieldErrors([{"field": "initial_peers", "message": "must be at most 2000 characters, no NUL"}])
        model_name = (plan.job.scenario.get("model") or {}).get("name") or "model"
        present = {srv.server_id for srv in cluster.servers.all()}
        used = {p["server"] for p in plan.document.get("placement") or [] if int(p["num_blocks"]) > 0}
        return Response({"plan": s.PlanSummarySerializer(plan).data, "model_name": model_name,
                         "petals_commands": petals_commands(plan.document, model_name, peers),
                         "plan_json": plan.document, "missing_servers": sorted(used - present)})

    @extend_schema(request=s.ObservedLoadSerializer, responses={200: s.ObservedLoadResultSerializer})
    @action(detail=True, methods=["post"], url_path="observed-load")
    def observed_load(self, request, pk=None):
        cluster = self.get_object()
        body = s.ObservedLoadSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        result = services.observed_load_record(cluster, body.validated_data["arrival_rate"],
                                               body.validated_data.get("window_s"))
        return Response(s.ObservedLoadResultSerializer(result).data)

    @extend_schema(request=s.ReplanRequestSerializer, responses={201: s.JobSerializer})
    @action(detail=True, methods=["post"])
    def replan(self, request, pk=None):
        cluster = self.get_object()
        body = s.ReplanRequestSerializer(data=request.data if isinstance(request.data, dict) else {})
        body.is_valid(raise_exception=True)
        detail = body.validated_data.get("detail") or f"requested by {_username(request)}"
        try:
            job = services.replan_request(cluster.pk, Trigger.MANUAL, detail)
        except services.ReplanRefused as exc:
            raise FieldErrors([{"field": "cluster", "message": str(exc)}]) from None
        return Response(s.JobSerializer(selectors.jobs_for(request.user).get(pk=job.pk)).data,
                        status=status.HTTP_201_CREATED)

    @extend_schema(methods=["GET"], responses={200: s.ScheduleSerializer(many=True)})
    @extend_schema(methods=["POST"], request=s.ScheduleSerializer, responses={201: s.ScheduleSerializer})
    @action(detail=True, methods=["get", "post"], pagination_class=None, filter_backends=[])
    def schedules(self, request, pk=None):
        cluster = self.get_object()
        if request.method == "GET":
            return Response(s.ScheduleSerializer(selectors.schedules_for(cluster), many=True).data)
        body = s.ScheduleSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        schedule = services.schedule_save(cluster, body.validated_data)
        return Response(s.ScheduleSerializer(selectors.schedules_for(cluster).get(pk=schedule.pk)).data,
                        status=status.HTTP_201_CREATED)

    @extend_schema(methods=["GET"], parameters=[SCHEDULE_ID], responses={200: s.ScheduleSerializer})
    @extend_schema(methods=["PUT", "PATCH"], parameters=[SCHEDULE_ID], request=s.ScheduleSerializer,
                   responses={200: s.ScheduleSerializer})
    @extend_schema(methods=["DELETE"], parameters=[SCHEDULE_ID], responses={204: None})
    @action(detail=True, methods=["get", "put", "patch", "delete"], url_path=r"schedules/(?P<schedule_id>\d+)",
            filter_backends=[])
    def schedule(self, request, pk=None, schedule_id=None):
        cluster = self.get_object()
        schedule = selectors.schedules_for(cluster).filter(pk=int(schedule_id)).first()
        if schedule is None:
            raise NotFound(f"cluster {cluster.pk} has no schedule {schedule_id}")
        if request.method == "GET":
            return Response(s.ScheduleSerializer(schedule).data)
        if request.method == "DELETE":
            services.schedule_delete(schedule)
            return Response(status=status.HTTP_204_NO_CONTENT)
        body = s.ScheduleSerializer(schedule, data=request.data, partial=request.method == "PATCH")
        body.is_valid(raise_exception=True)
        services.schedule_save(cluster, body.validated_data, instance=schedule)
        return Response(s.ScheduleSerializer(selectors.schedules_for(cluster).get(pk=schedule.pk)).data)

    @extend_schema(request=None, responses={201: s.TokenSerializer})
    @action(detail=True, methods=["post"], url_path=r"servers/(?P<server_id>[^/]+)/probe-token")
    def probe_token(self, request, pk=None, server_id=None):
        cluster = self.get_object()
        server = cluster.servers.filter(server_id=server_id).first()
        if server is None:
            raise NotFound(f"cluster {cluster.pk} has no server {server_id!r}")
        token = services.probe_token_create(server)
        return Response({"token": token.key}, status=status.HTTP_201_CREATED)


# ---------------------------------------------------------------------------
# algorithms
# ---------------------------------------------------------------------------

class AlgorithmsView(APIView):
    @extend_schema(responses={200: s.AlgorithmSerializer(many=True)})
    def get(self, request):
        return Response([{"name": name, "description": text, "default": name in DEFAULT_ALGORITHMS}
                         for name, text in ALGORITHMS.items()])


# ---------------------------------------------------------------------------
# jobs and plans
# ---------------------------------------------------------------------------

class JobFilter(df.FilterSet):
    status = df.MultipleChoiceFilter(choices=JobStatus.choices)
    algorithm = df.CharFilter(method="filter_algorithm")
    created_after = df.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = df.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

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
        job = services.job_cancel(self.get_object(), by=_username(request))
        return Response(self.get_serializer(self.get_queryset().get(pk=job.pk)).data)


class PlanFilter(df.FilterSet):
    cluster = df.NumberFilter(field_name="job__cluster")

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
        OpenApiParameter("points", OpenApiTypes.INT, description="evenly spaced rates up to the plan's capacity")],
        responses={200: s.CurveSerializer})
    @action(detail=True, methods=["get"])
    def curve(self, request, pk=None):
        doc = self.get_object().document
        chains = [Chain(servers=tuple(ch["servers"]), blocks=tuple(ch["blocks"]),
                        service_time_s=float(ch["service_time_s"]), capacity=int(ch["capacity"]))
                  for ch in doc.get("chains") or []]
        capacity_rate = sum(ch.capacity / ch.service_time_s for ch in chains)
        rates = _curve_rates(request.query_params, capacity_rate)
        return Response({"points": response_time_curve(chains, rates)})

    @extend_schema(request=None, responses={201: s.AdoptionDetailSerializer})
    @action(detail=True, methods=["post"])
    def adopt(self, request, pk=None):
        """Make this plan the adopted plan of its cluster (history and webhook as for a re-plan)."""
        adoption = services.plan_adopt(request.user, self.get_object())
        return Response(s.AdoptionDetailSerializer(adoption).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[
        OpenApiParameter("new", OpenApiTypes.INT, required=True, description="the plan to move to"),
        OpenApiParameter("old", OpenApiTypes.INT,
                         description="the plan to move from (default: the adopted plan of new's cluster)")],
        responses={200: s.DiffSerializer})
    @action(detail=False, methods=["get"], filter_backends=[])
    def diff(self, request):
        from solvers.switching import plan_diff
        owned = selectors.plans_for(request.user)
        ids, errors = {}, []
        for key in ("new", "old"):
            raw = request.query_params.get(key)
            if raw in (None, ""):
                if key == "new":
                    errors.append({"field": "new", "message": "is required"})
                continue
            try:
                ids[key] = int(raw)
            except ValueError:
                errors.append({"field": key, "message": "must be a plan id"})
        if errors:
            raise FieldErrors(errors)
        new = owned.filter(pk=ids["new"]).first()
        if new is None:
            raise NotFound(f"no plan {ids['new']}")
        if "old" in ids:
            old = owned.filter(pk=ids["old"]).first()
            if old is None:
                raise NotFound(f"no plan {ids['old']}")
        else:
            cluster = new.job.cluster
            old = owned.filter(pk=cluster.adopted_plan_id).first() if cluster and cluster.adopted_plan_id else None
        return Response({"old": old.pk if old else None, "new": new.pk,
                         **plan_diff(old.document if old else None, new.document)})

    @extend_schema(responses={200: s.CommandsSerializer})
    @action(detail=True, methods=["get"], url_path="petals-commands")
    def petals_commands(self, request, pk=None):
        plan = self.get_object()
        model_name = (plan.job.scenario.get("model") or {}).get("name", "model")
        commands = []
        for row in plan.document.get("placement") or []:
            start, count = int(row["start_block"]), int(row["num_blocks"])
            if count <= 0:
                continue
            commands.append(f"# on {row['server']}\npython -m petals.cli.run_server {shlex.quote(model_name)} "
                            f"--block_indices {start}:{start + count}")
        return Response({"commands": commands})


MAX_CURVE_POINTS = 500


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


# ---------------------------------------------------------------------------
# probe
# ---------------------------------------------------------------------------

class IsProbe(permissions.BasePermission):
    def has_permission(self, request, view):
        from .models import ProbeToken
        return isinstance(request.auth, ProbeToken)


class ProbeReportView(APIView):
    """A GPU probe reports the measured figures of the one server its token names."""

    authentication_classes = [ProbeTokenAuthentication]
    permission_classes = [IsProbe]

    @extend_schema(request={"application/json": {"type": "object", "description": "docs/probe-report.md"}},
                   responses={201: s.ProbeReportAcceptedSerializer})
    def post(self, request):
        from gpu_probe.report import validate_report
        report = request.data
        server = request.auth.server
        cluster = server.cluster
        if not isinstance(report, dict):
            raise FieldErrors([{"field": "", "message": "a probe report must be a JSON object"}])
        problems = nul_errors(report, "", [])
        if problems:
            raise FieldErrors(problems)
        arch = cluster.model.architecture if cluster.model is not None and cluster.model.architecture else None
        reasons = validate_report(report, expected_cluster=cluster.pk, expected_server=server.server_id,
                                  expected_architecture=arch)
        if reasons:
            raise FieldErrors([{"field": "", "message": reason} for reason in reasons])
        calibration = services.calibration_record(server, report)
        return Response({"id": calibration.pk, "accepted": True}, status=status.HTTP_201_CREATED)


# ---------------------------------------------------------------------------
# web UI
# ---------------------------------------------------------------------------

def frontend(request, path=""):
    """The single-page app's index.html for any non-API path (client-side routing)."""
    index = settings.FRONTEND_DIST / "index.html"
    if index.is_file():
        return FileResponse(index.open("rb"), content_type="text/html")
    return HttpResponse("<!doctype html><title>chainplan</title><h1>chainplan</h1>"
                        "<p>The web UI is not built (npm run build in frontend/). "
                        "The API is at <a href='/api/v1/docs/'>/api/v1/docs/</a>.</p>", content_type="text/html")
