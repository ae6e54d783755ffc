"""Clusters and models: create, edit, import and export them."""

from __future__ import annotations

import dataclasses
import math

from django_filters import rest_framework as df
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from solvers.hf_config import derive_hf_config, looks_like_hf_config
from solvers.presets import PRESETS

from ..core.documents import SCENARIO_EXPORT_REF
from ..core.errors import FieldErrors
from ..core.filters import ID_MAX, IdFilter
from ..core.validation import derive_model
from ..core.views import OwnedQuerysetMixin
from . import selectors, serializers as s, services
from .models import Cluster, ModelSpec


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
        out = derive_model({"name": "derive", "architecture": arch}, body.validated_data.get("max_tokens"))
        if looks_like_hf_config(arch):
            full = derive_hf_config(arch).to_dict()     # already checked by derive_model
            out["hf_config"] = {k: full[k] for k in ("family", "model_type", "params_per_block", "total_params",
                                                     "kv_bytes_per_token_per_block", "notes")}
        return Response(out)

    @extend_schema(responses={200: s.PresetSerializer(many=True)})
    @action(detail=False, methods=["get"], pagination_class=None, filter_backends=[])
    def presets(self, request):
        return Response([{"name": name, "architecture": dataclasses.asdict(arch)}
                         for name, arch in sorted(PRESETS.items())])


class ClusterFilter(df.FilterSet):
    model = IdFilter()

    class Meta:
        model = Cluster
        fields = {"name": ["exact", "icontains"]}


class ClusterViewSet(OwnedQuerysetMixin, viewsets.ModelViewSet):
    model = Cluster
    serializer_class = s.ClusterSerializer
    ordering_fields = ["created_at", "updated_at", "name"]
    filterset_class = ClusterFilter

    def owned_queryset(self):
        return selectors.clusters_for(self.request.user)

    def get_serializer_class(self):
        # lists stay small with 20,000-server clusters: the servers are on the object endpoint
        return s.ClusterSummarySerializer if self.action == "list" else super().get_serializer_class()

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

    @extend_schema(parameters=[OpenApiParameter("model", {"type": "integer", "minimum": 1, "maximum": ID_MAX},
                                               description="default: the cluster's model"),
                               OpenApiParameter("arrival_rate", {"type": "number", "minimum": 0, "exclusiveMinimum": True},
                                                description="default: the imported workload's")],
                   responses={200: SCENARIO_EXPORT_REF})
    @action(detail=True, methods=["get"])
    def export(self, request, pk=None):
        cluster = self.get_object()
        errors = []
        model = cluster.model
        if request.query_params.get("model"):
            try:
                model_id = int(request.query_params["model"])
                if not 1 <= model_id <= ID_MAX:
                    raise ValueError
                model = selectors.models_for(request.user).get(pk=model_id)
            except (ValueError, ModelSpec.DoesNotExist):
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
