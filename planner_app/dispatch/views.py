"""Owner-side dispatch endpoints (Django): dispatch tokens and the dispatcher panel.

acquire/release/renew/state are served by the ASGI dispatcher (serving.dispatch.http), mounted
in front of Django in planner_app.asgi; schema.py describes them in the OpenAPI document.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from ..core.serializers import TokenSerializer
from . import selectors, services
from .serializers import DispatcherPanelSerializer, DispatchTokenSerializer


class ClusterDispatchActions:
    # /clusters/{id}/dispatch/tokens/ and /clusters/{id}/dispatcher/ (mixed into the cluster viewset).

    @extend_schema(methods=["POST"], request=None,
                   responses={201: TokenSerializer, 404: OpenApiResponse(description="No such cluster of yours.")},
                   description="A dispatch token for this cluster: it may only acquire, release, renew and read "
                               "the dispatch state of this cluster (`Authorization: Dispatch <token>`). "
                               "Shown once; only its digest is stored.")
    @extend_schema(methods=["GET"], responses={200: DispatchTokenSerializer(many=True),
                                               404: OpenApiResponse(description="No such cluster of yours.")},
                   description="The cluster's dispatch tokens (newest first, paginated): id, first characters, "
                               "creation, revocation. The tokens themselves are never shown again.")
    @action(detail=True, methods=["get", "post"], url_path="dispatch/tokens", filter_backends=[])
    def dispatch_tokens(self, request, pk=None):
        cluster = self.get_object()
        if request.method == "GET":
            rows = selectors.tokens_of(cluster)
            page = self.paginate_queryset(rows)
            if page is not None:
                return self.get_paginated_response(DispatchTokenSerializer(page, many=True).data)
            return Response(DispatchTokenSerializer(rows, many=True).data)
        return Response({"token": services.token_create(cluster, request.user)}, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: DispatchTokenSerializer,
                                            404: OpenApiResponse(description="No such cluster or token.")},
                   description="Revoke a dispatch token: the dispatcher refuses it (401) from the next request on. "
                               "Revoking twice is harmless; the row stays, marked revoked.")
    @action(detail=True, methods=["delete"], url_path=r"dispatch/tokens/(?P<token_id>[0-9]+)")
    def dispatch_token_revoke(self, request, pk=None, token_id=None):
        cluster = self.get_object()
        row = services.token_revoke(cluster, int(token_id))
        if row is None:
            raise NotFound(f"cluster {cluster.pk} has no dispatch token {token_id}")
        return Response(DispatchTokenSerializer(row).data)

    @extend_schema(responses={200: DispatcherPanelSerializer},
                   description="The live dispatcher's state for the cluster page (chains, queue, arrival rate, "
                               "measured vs predicted service times) and recent stored aggregates.")
    @action(detail=True, methods=["get"], url_path="dispatcher")
    def dispatcher(self, request, pk=None):
        return Response(selectors.dispatcher_view(self.get_object()))
