"""Liveness on a cluster (heartbeat, drain, the servers' states, the history) and its Prometheus metrics.
urls.py mixes the actions into the cluster viewset, so the paths stay /clusters/{id}/..."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import permissions, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.decorators import action
from rest_framework.exceptions import APIException, NotFound, PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from serving.dispatch.protocol import DispatchError

from ..core.authentication import CachedTokenAuthentication
from ..core.errors import Conflict, FieldErrors
from ..core.views import username_of
from ..probe.authentication import ProbeTokenAuthentication
from ..probe.models import ProbeToken
from . import mirror, selectors, serializers as s, services
from .metrics import render_metrics
from .models import EventKind

SERVER_ID = OpenApiParameter("server_id", OpenApiTypes.STR, OpenApiParameter.PATH,
                             description="the server's server_id in the cluster")
AUTH_WITH_PROBE = [ProbeTokenAuthentication, CachedTokenAuthentication, SessionAuthentication]


class StoreUnavailableError(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "store_unavailable"


class StoreRefused(APIException):
    default_code = "store_refused"

    def __init__(self, exc: DispatchError):
        super().__init__(exc.detail)
        self.status_code = exc.status if 400 <= exc.status < 600 else 500


def _store_call(fn, *args):
    """Run a write that mirrors to the store; an outage is a 503 with Retry-After, a refusal keeps its status."""
    try:
        return fn(*args)
    except mirror.StoreUnavailable as exc:
        error = StoreUnavailableError(str(exc))
        error.wait = 1
        raise error from None
    except DispatchError as exc:
        raise StoreRefused(exc) from None


class ClusterLivenessActions:
    # /clusters/{id}/servers/{server_id}/heartbeat|drain/ and /clusters/{id}/liveness/[servers/]
    # (mixed into the cluster viewset).

    def _server(self, request, pk, server_id, *, probe: bool):
        """The cluster's server the request may act on: a probe token only its own server (and only when
        ``probe``), an API token or session the servers of its owner's clusters."""
        token = request.auth
        if isinstance(token, ProbeToken):
            if not probe:
                raise PermissionDenied("a probe token may only send its server's heartbeats; draining a server "
                                       "needs the owner's API token")
            mine = token.server
            if str(mine.cluster_id) != str(pk) or mine.server_id != server_id:
                raise PermissionDenied(f"this probe token is for server {mine.server_id!r} of cluster "
                                       f"{mine.cluster_id}, not server {server_id!r} of cluster {pk}")
            return mine
        cluster = self.get_object()
        server = cluster.servers.filter(server_id=server_id).first()
        if server is None:
            raise NotFound(f"cluster {cluster.pk} has no server {server_id!r}")
        return server

    @extend_schema(parameters=[SERVER_ID], request=s.HeartbeatSerializer,
                   responses={200: s.ServerStateAnswerSerializer},
                   description="A heartbeat from beside a server (the GPU probe's `watch` mode, or any serving-side "
                               "process): it is alive (`up`) or `draining` (finishing what it has, taking nothing "
                               "new). Authorised by that server's probe token (`Authorization: Probe <token>`) or "
                               "the owner. Mirrored to the dispatcher's store, which answers the server's state "
                               "now; a server that stops sending goes down after the store's heartbeat timeout "
                               "(docs/liveness.md). While the owner drains the server, `up` is passed on as "
                               "`draining`.")
    @action(detail=True, methods=["post"], url_path=r"servers/(?P<server_id>[^/]+)/heartbeat",
            authentication_classes=AUTH_WITH_PROBE, filter_backends=[])
    def heartbeat(self, request, pk=None, server_id=None):
        server = self._server(request, pk, server_id, probe=True)
        body = s.HeartbeatSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = dict(body.validated_data)
        state = data.pop("state")
        answer = _store_call(services.heartbeat_record, server, state, data)
        return Response(s.ServerStateAnswerSerializer(answer).data)

    @extend_schema(methods=["POST"], parameters=[SERVER_ID], request=s.EmptyBodySerializer,
                   responses={200: s.ServerStateAnswerSerializer},
                   auth=[{"tokenAuth": []}, {"cookieAuth": []}],
                   description="Drain a server (owner only): its chains get no new grants from now on; once no "
                               "lease in flight passes through it, it leaves the plan through a re-plan on the "
                               "servers that are up. Asking again changes nothing; the drain holds until DELETE.")
    @extend_schema(methods=["DELETE"], parameters=[SERVER_ID], request=None,
                   responses={200: s.ServerStateAnswerSerializer},
                   auth=[{"tokenAuth": []}, {"cookieAuth": []}],
                   description="End a drain (owner only): the server is up again and rejoins the plan through a "
                               "re-plan once it has stayed up a while.")
    @action(detail=True, methods=["post", "delete"], url_path=r"servers/(?P<server_id>[^/]+)/drain",
            authentication_classes=AUTH_WITH_PROBE, filter_backends=[])
    def drain(self, request, pk=None, server_id=None):
        server = self._server(request, pk, server_id, probe=False)
        if request.method == "DELETE":
            try:
                answer = _store_call(services.drain_end, server, username_of(request))
            except services.NotDraining as exc:
                raise Conflict(str(exc)) from None
            return Response(s.ServerStateAnswerSerializer(answer).data)
        s.EmptyBodySerializer(data=request.data).is_valid(raise_exception=True)
        answer = _store_call(services.drain_start, server, username_of(request))
        return Response(s.ServerStateAnswerSerializer(answer).data)

    @extend_schema(responses={200: s.LivenessServersSerializer},
                   description="Each server's state as the service records it (the store's, within a second), "
                               "its last heartbeat and drain, the adopted plan's chains masked now and the last "
                               "re-plan healing started.")
    @action(detail=True, methods=["get"], url_path="liveness/servers", filter_backends=[], pagination_class=None)
    def liveness_servers(self, request, pk=None):
        return Response(s.LivenessServersSerializer(selectors.servers_view(self.get_object())).data)

    @extend_schema(parameters=[
        OpenApiParameter("server", OpenApiTypes.STR, description="only this server's entries"),
        OpenApiParameter("kind", OpenApiTypes.STR, enum=[k for k, _ in EventKind.choices],
                         description="only entries of this kind")],
        responses={200: s.LivenessEventSerializer(many=True)},
        description="The cluster's liveness history, newest first (paginated): every state transition the "
                    "dispatcher's store made (failure reports, heartbeats, timeouts, drains) and every completed "
                    "drain, each with the adopted plan's chains it masked or unmasked and the re-plan it started "
                    "(with that re-plan's outcome: adopted or kept as a candidate).")
    @action(detail=True, methods=["get"], url_path="liveness", filter_backends=[])
    def liveness(self, request, pk=None):
        cluster = self.get_object()
        server = request.query_params.get("server")
        kind = request.query_params.get("kind")
        errors = []
        if server is not None and (not server or len(server) > 128 or "\x00" in server):
            errors.append({"field": "server", "message": "must be a server id (1 to 128 characters, no NUL)"})
        if kind is not None and kind not in EventKind.values:
            errors.append({"field": "kind", "message": f"must be one of: {', '.join(EventKind.values)}"})
        if errors:
            raise FieldErrors(errors)
        rows = selectors.history_of(cluster, server=server, kinds=[kind] if kind else None)
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(s.LivenessEventSerializer(page, many=True).data)


class LivenessMetricsView(APIView):
    """Prometheus text: each server's state, masked chains, transitions and healing re-plans (docs/liveness.md)."""

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(responses={(200, "text/plain"): OpenApiResponse(OpenApiTypes.STR,
                                                                  description="Prometheus exposition format"),
                              401: OpenApiResponse(description="CHAINPLAN_METRICS_TOKEN is set and the bearer "
                                                               "token is missing or wrong.")},
                   auth=[{}, {"bearerAuth": []}])
    def get(self, request):
        if settings.METRICS_TOKEN:
            sent = request.headers.get("Authorization", "")
            if not hmac.compare_digest(sent.encode(), f"Bearer {settings.METRICS_TOKEN}".encode()):
                return JsonResponse({"detail": "metrics need 'Authorization: Bearer <CHAINPLAN_METRICS_TOKEN>'",
                                     "errors": []}, status=401)
        body, content_type = render_metrics(selectors.metrics_rows())
        return HttpResponse(body, content_type=content_type)
