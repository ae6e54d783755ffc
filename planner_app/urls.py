"""URL map: the versioned API under /api/v1/, admin, and the web UI at "/"."""

from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from . import views

router = DefaultRouter(trailing_slash=True)
router.include_root_view = False
router.register("clusters", views.ClusterViewSet, basename="cluster")
router.register("models", views.ModelSpecViewSet, basename="model")
router.register("jobs", views.JobViewSet, basename="job")
router.register("plans", views.PlanViewSet, basename="plan")

api = [
    path("auth/token/", views.TokenView.as_view(), name="auth-token"),
    path("auth/login/", views.LoginView.as_view(), name="auth-login"),
    path("auth/logout/", views.LogoutView.as_view(), name="auth-logout"),
    path("auth/me/", views.MeView.as_view(), name="auth-me"),
    path("auth/csrf/", views.CsrfView.as_view(), name="auth-csrf"),
    path("algorithms/", views.AlgorithmsView.as_view(), name="algorithms"),
    path("health/", views.HealthView.as_view(), name="health"),
    path("probe/reports/", views.ProbeReportView.as_view(), name="probe-reports"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("", include(router.urls)),
]

urlpatterns = [
    path("api/v1/", include(api)),
    path("admin/", admin.site.urls),
    # everything else that is not an API, admin or static path is the web UI
    re_path(r"^(?!api/|admin/|static/)(?P<path>.*)$", views.frontend, name="frontend"),
]


def _json_error(status: int, detail: str):
    def handler(request, exception=None):
        return JsonResponse({"detail": detail, "errors": []}, status=status)
    return handler


handler400 = _json_error(400, "bad request")
handler403 = _json_error(403, "forbidden")
handler404 = _json_error(404, "not found")
handler500 = _json_error(500, "internal error; the administrator can find the details in the server log")
