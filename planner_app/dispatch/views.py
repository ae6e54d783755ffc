"""Owner-side dispatch endpoints (Django): dispatch tokens and the dispatcher panel.

acquire/release/renew/state are served by the ASGI dispatcher (serving.dispatch.http), mounted
in front of Django in planner_app.asgi; schema.py describes them in the OpenAPI document.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.response import Response

from ..core.serializers import TokenSerializer
from . import selectors, services
from .serializers import DispatcherPanelSerializer


class ClusterDispatchActions:
    # /clusters/{id}/dispatch/tokens/ and /clusters/{id}/dispatcher/ (mixed into the cluster viewset).

    @extend_schema(request=None, responses={201: TokenSerializer},
                   description="A dispatch token for this cluster: it may only acquire, release, renew and read "
                               "the dispatch state of this cluster (`Authorization: Dispatch <token>`). "
                               "Shown once; only its digest is stored.")
    @action(detail=True, methods=["post"], url_path="dispatch/tokens")
    def dispatch_tokens(self, request, pk=None):
        cluster = self.get_object()
        return Response({"token": services.token_create(cluster, request.user)}, status=status.HTTP_201_CREATED)

    @extend_schema(responses={200: DispatcherPanelSerializer},
                   description="The live dispatcher's state for the cluster page (chains, queue, arrival rate, "
                               "measured vs predicted service times) and recent stored aggregates.")
    @action(detail=True, methods=["get"], url_path="dispatcher")
    def dispatcher(self, request, pk=None):
        return Response(selectors.dispatcher_view(self.get_object()))
