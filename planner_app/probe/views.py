"""A GPU probe reports its server's figures; an owner creates a probe token for one server."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import permissions, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from ..core.errors import FieldErrors
from ..core.serializers import TokenSerializer
from ..core.validation import nul_errors
from . import serializers as s, services
from .authentication import ProbeTokenAuthentication
from .models import ProbeToken


class IsProbe(permissions.BasePermission):
    def has_permission(self, request, view):
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


class ClusterProbeActions:
    # /clusters/{id}/servers/{server_id}/probe-token/ (mixed into the cluster viewset).

    @extend_schema(request=None, responses={201: TokenSerializer})
    @action(detail=True, methods=["post"], url_path=r"servers/(?P<server_id>[^/]+)/probe-token")
    def probe_token(self, request, pk=None, server_id=None):
        cluster = self.get_object()
        server = cluster.servers.filter(server_id=server_id).first()
        if server is None:
            raise NotFound(f"cluster {cluster.pk} has no server {server_id!r}")
        token = services.probe_token_create(server)
        return Response({"token": token.key}, status=status.HTTP_201_CREATED)
