"""Views that belong to no domain: sign-in, health, and the web UI."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import authenticate, login, logout
from django.http import FileResponse, HttpResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_protect, ensure_csrf_cookie
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from . import serializers as s, services
from .authentication import CachedTokenAuthentication
from .errors import FieldErrors


class OwnedQuerysetMixin:
    """get_queryset through a selector scoped to request.user.

    drf-spectacular builds the schema without a user (swagger_fake_view); it gets an empty queryset.
    """

    model = None

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return self.model.objects.none()
        return self.owned_queryset()

    def filter_queryset(self, queryset):
        # List filters are for lists: on an object endpoint a query parameter means something
        # else (GET /clusters/{id}/export/?model=<id> names the model to export with).
        return super().filter_queryset(queryset) if not self.detail else queryset


def _check_password(request):
    """The active user named by a {"username", "password"} body, or a 400."""
    body = s.TokenRequestSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    user = authenticate(request, **body.validated_data)
    if user is None or not user.is_active:
        raise FieldErrors([{"field": "", "message": "unable to log in with the given username and password"}])
    return user


def username_of(request) -> str:
    return request.user.get_username()


class _PasswordSignInView(APIView):
    # Both ways to sign in with a password (an API token, a browser session): no credentials
    # are needed yet, and guesses share the "login" rate.  No docstring: drf-spectacular would
    # hand it to every sign-in view without one of its own.
    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"


class TokenView(_PasswordSignInView):
    @extend_schema(request=s.TokenRequestSerializer, responses={200: s.TokenSerializer}, auth=[])
    def post(self, request):
        user = _check_password(request)
        _, token = services.user_ensure(user.get_username())
        return Response({"token": token})


@method_decorator(csrf_protect, name="post")   # on post: an unknown method is a 405, not a CSRF 403
class LoginView(_PasswordSignInView):
    """Session login for the browser; CSRF-protected (GET /auth/csrf/ first)."""

    @extend_schema(request=s.TokenRequestSerializer, responses={200: s.UsernameSerializer}, auth=[])
    def post(self, request):
        user = _check_password(request)
        login(request, user)
        return Response({"username": user.get_username()})


class LogoutView(APIView):
    permission_classes = [permissions.AllowAny]

    @extend_schema(request=None, responses={204: None})
    def post(self, request):
        logout(request)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    # Anyone may ask: signed out is an answer ({"username": null}), not an error the browser logs.
    authentication_classes = [SessionAuthentication, CachedTokenAuthentication]
    permission_classes = [permissions.AllowAny]

    @extend_schema(responses={200: s.MeSerializer})
    def get(self, request):
        return Response({"username": username_of(request) if request.user.is_authenticated else None})


@method_decorator(ensure_csrf_cookie, name="dispatch")
class CsrfView(APIView):
    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(responses={204: None}, auth=[])
    def get(self, request):
        return Response(status=status.HTTP_204_NO_CONTENT)


class HealthView(APIView):
    """Can jobs run now? Database, broker and live workers on the job queue; 503 when any is missing."""

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(responses={200: s.HealthSerializer, 503: s.HealthSerializer}, auth=[])
    def get(self, request):
        from .health import health
        body = health()
        return Response(body, status=status.HTTP_200_OK if body["status"] == "ok"
                        else status.HTTP_503_SERVICE_UNAVAILABLE)


def frontend(request, path=""):
    """The single-page app's index.html for any non-API path (client-side routing)."""
    index = settings.FRONTEND_DIST / "index.html"
    if index.is_file():
        return FileResponse(index.open("rb"), content_type="text/html")
    return HttpResponse("<!doctype html><title>chainplan</title><h1>chainplan</h1>"
                        "<p>The web UI is not built (npm run build in frontend/). "
                        "The API is at <a href='/api/v1/docs/'>/api/v1/docs/</a>.</p>", content_type="text/html")
