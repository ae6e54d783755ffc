"""OpenAPI description of the probe's authentication scheme (imported in apps.ready)."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ProbeAuthScheme(OpenApiAuthenticationExtension):
    target_class = "planner_app.probe.authentication.ProbeTokenAuthentication"
    name = "ProbeAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "Authorization",
                "description": "`Probe <token>` from POST /api/v1/clusters/{id}/servers/{server_id}/probe-token/"}
