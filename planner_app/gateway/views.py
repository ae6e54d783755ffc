"""Owner-side gateway endpoints (Django): gateway keys and the gateway panel.

The OpenAI endpoints themselves (/v1/...) are served by serving.gateway's ASGI app, mounted in
front of Django in planner_app.asgi; it checks keys in the dispatcher's store, never here.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from . import selectors, services
from .serializers import GatewayKeyCreatedSerializer, GatewayKeySerializer, GatewayPanelSerializer

NOT_YOURS = OpenApiResponse(description="No such cluster of yours.")


class ClusterGatewayActions:
    # /clusters/{id}/gateway/keys/ and /clusters/{id}/gateway/ (mixed into the cluster viewset).

    @extend_schema(methods=["POST"], request=None, responses={201: GatewayKeyCreatedSerializer, 404: NOT_YOURS},
                   description="A gateway key for this cluster: `Authorization: Bearer <key>` on the OpenAI "
                               "endpoints under /v1/ (docs/gateway.md), for this cluster's models only. Shown "
                               "once; only its digest is stored. It works from the next request on.")
    @extend_schema(methods=["GET"], responses={200: GatewayKeySerializer(many=True), 404: NOT_YOURS},
                   description="The cluster's gateway keys (newest first, paginated): id, first characters, "
                               "creation, revocation. The keys themselves are never shown again.")
    @action(detail=True, methods=["get", "post"], url_path="gateway/keys", filter_backends=[])
    def gateway_keys(self, request, pk=None):
        cluster = self.get_object()
        if request.method == "GET":
            page = self.paginate_queryset(selectors.keys_of(cluster))
            return self.get_paginated_response(GatewayKeySerializer(page, many=True).data)
        issued = services.key_create(cluster, request.user)
        return Response({"id": issued.row.pk, "key": issued.key, "hint": issued.row.hint},
                        status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: GatewayKeySerializer,
                                            404: OpenApiResponse(description="No such cluster or key.")},
                   description="Revoke a gateway key: the gateway refuses it (401, OpenAI's shape) from the next "
                               "request on. Revoking twice is harmless; the row stays, marked revoked.")
    @action(detail=True, methods=["delete"], url_path=r"gateway/keys/(?P<key_id>[0-9]+)")
    def gateway_key_revoke(self, request, pk=None, key_id=None):
        cluster = self.get_object()
        row = services.key_revoke(cluster, int(key_id))
        if row is None:
            raise NotFound(f"cluster {cluster.pk} has no gateway key {key_id}")
        return Response(GatewayKeySerializer(row).data)

    @extend_schema(responses={200: GatewayPanelSerializer, 404: NOT_YOURS},
                   description="The gateway panel of the cluster page: the OpenAI base path on this service "
                               "(`<origin>/v1`), the model names served for the cluster, the number of live keys.")
    @action(detail=True, methods=["get"], url_path="gateway")
    def gateway(self, request, pk=None):
        return Response(selectors.gateway_view(self.get_object()))
