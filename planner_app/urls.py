"""The map of the API: every endpoint under /api/v1/ and the domain that answers it; admin; the web UI at "/".

A cluster's and a plan's endpoints come from several domains: the catalog's CRUD plus the
re-planning and probe actions mixed in below, so the paths stay /clusters/{id}/... and /plans/{id}/...
"""

from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from .catalog import views as catalog
from .core import views as core
from .dispatch import views as dispatch
from .gateway import views as gateway
from .liveness import views as liveness
from .planning import views as planning
from .probe import views as probe
from .replanning import ingest as replanning_ingest, views as replanning


class ClusterViewSet(replanning_ingest.ClusterImportActions, replanning.ClusterReplanningActions, probe.ClusterProbeActions,
                     dispatch.ClusterDispatchActions, liveness.ClusterLivenessActions, gateway.ClusterGatewayActions,
                     catalog.ClusterViewSet):
    # /clusters/: catalog (CRUD, import, export); re-planning (adopted-plan, adoptions, candidates, apply,
    # observed-load, replan, schedules); probe (servers/{server_id}/probe-token); dispatch (dispatch/tokens,
    # dispatcher; acquire/release/renew/state are the ASGI dispatcher's, see planner_app.asgi); liveness
    # (servers/{server_id}/heartbeat, servers/{server_id}/drain, liveness, liveness/servers); gateway
    # (gateway/keys, gateway; the OpenAI endpoints under /v1/ are the ASGI gateway's).
    # (No docstring: a viewset's docstring would become every operation's description in the schema.)
    pass


class PlanViewSet(replanning.PlanReplanningActions, planning.PlanViewSet):
    # /plans/: planning (list, read, curve, petals-commands); re-planning (adopt, diff).
    pass


router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("clusters", ClusterViewSet, basename="cluster")
router.register("models", catalog.ModelSpecViewSet, basename="model")                 # catalog
router.register("jobs", planning.JobViewSet, basename="job")                          # planning
router.register("plans", PlanViewSet, basename="plan")

api = [
    # core: sign-in and health
    path("auth/token/", core.TokenView.as_view(), name="auth-token"),
    path("auth/login/", core.LoginView.as_view(), name="auth-login"),
    path("auth/logout/", core.LogoutView.as_view(), name="auth-logout"),
    path("auth/me/", core.MeView.as_view(), name="auth-me"),
    path("auth/csrf/", core.CsrfView.as_view(), name="auth-csrf"),
    path("health/", core.HealthView.as_view(), name="health"),
    # planning
    path("algorithms/", planning.AlgorithmsView.as_view(), name="algorithms"),
    # probe
    path("probe/reports/", probe.ProbeReportView.as_view(), name="probe-reports"),
    # liveness: Prometheus text, next to the dispatcher's /api/v1/dispatch/metrics
    path("liveness/metrics", liveness.LivenessMetricsView.as_view(), name="liveness-metrics"),
    # the API's own description
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("", include(router.urls)),
]

urlpatterns = [
    path("api/v1/", include(api)),
    path("admin/", admin.site.urls),
    # everything else that is not an API, admin or static path is the web UI
    re_path(r"^(?!api/|admin/|static/)(?P<path>.*)$", core.frontend, name="frontend"),
]


def _json_error(status: int, detail: str):
    def handler(request, exception=None):
        return JsonResponse({"detail": detail, "errors": []}, status=status)
    return handler


handler400 = _json_error(400, "bad request")
handler403 = _json_error(403, "forbidden")
handler404 = _json_error(404, "not found")
handler500 = _json_error(500, "internal error; the administrator can find the details in the server log")
