"""Re-planning actions on a cluster (adopted plan, candidates, re-plan, schedules, observed load)
and on a plan (adopt, diff). urls.py mixes them into the cluster and plan viewsets."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from ..core.errors import FieldErrors
from ..core.views import username_of
from ..planning import selectors as planning_selectors
from ..planning.models import Trigger
from ..planning.serializers import JobSerializer, PlanDetailSerializer, PlanSummarySerializer
from ..planning.services import petals_launch_commands
from . import selectors, serializers as s, services

SCHEDULE_ID = OpenApiParameter("schedule_id", OpenApiTypes.INT, OpenApiParameter.PATH)


class ClusterReplanningActions:
    # /clusters/{id}/...: what the cluster runs and how it is re-planned (mixed into the cluster viewset).

    @extend_schema(responses={200: s.AdoptedPlanSerializer})
    @action(detail=True, methods=["get"], url_path="adopted-plan")
    def adopted_plan(self, request, pk=None):
        plan, adoption = selectors.adopted_plan_of(self.get_object())
        return Response({"plan": PlanDetailSerializer(plan).data if plan else None,
                         "adoption": s.AdoptionDetailSerializer(adoption).data if adoption else None})

    @extend_schema(responses={200: s.AdoptionSerializer(many=True)})
    @action(detail=True, methods=["get"], filter_backends=[])
    def adoptions(self, request, pk=None):
        qs = selectors.adoptions_for(request.user, self.get_object())
        page = self.paginate_queryset(qs)
        return self.get_paginated_response(s.AdoptionSerializer(page, many=True).data)

    @extend_schema(responses={200: s.CandidateSerializer(many=True)})
    @action(detail=True, methods=["get"], filter_backends=[])
    def candidates(self, request, pk=None):
        cluster = self.get_object()
        page = self.paginate_queryset(selectors.candidates_for(request.user, cluster))
        adopted_job = selectors.adopted_job_id(cluster)
        workloads = selectors.workloads_of([p.job_id for p in page] + ([adopted_job] if adopted_job else []))
        context = {"workloads": workloads, "adopted": workloads.get(adopted_job) if adopted_job else None}
        return self.get_paginated_response(s.CandidateSerializer(page, many=True, context=context).data)

    @extend_schema(parameters=[OpenApiParameter("initial_peers", OpenApiTypes.STR,
                                                description="multiaddr(s) of the swarm's bootstrap peers")],
                   responses={200: s.ApplySerializer})
    @action(detail=True, methods=["get"])
    def apply(self, request, pk=None):
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
        return Response({"plan": PlanSummarySerializer(plan).data, "model_name": model_name,
                         "petals_commands": petals_launch_commands(plan, peers)[0],
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

    @extend_schema(request=s.ReplanRequestSerializer, responses={201: JobSerializer})
    @action(detail=True, methods=["post"])
    def replan(self, request, pk=None):
        cluster = self.get_object()
        if not isinstance(request.data, dict):     # a JSON array or scalar is not an (optional) object
            raise FieldErrors([{"field": "", "message": "the body must be a JSON object (or empty)"}])
        body = s.ReplanRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        detail = body.validated_data.get("detail") or f"requested by {username_of(request)}"
        try:
            job = services.replan_request(cluster.pk, Trigger.MANUAL, detail)
        except services.ReplanRefused as exc:
            raise FieldErrors([{"field": "cluster", "message": str(exc)}]) from None
        return Response(JobSerializer(planning_selectors.jobs_for(request.user).get(pk=job.pk)).data,
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


class PlanReplanningActions:
    # /plans/...: adopting a plan and the diff between two (mixed into the plan viewset).

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
        owned = planning_selectors.plans_for(request.user)
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
