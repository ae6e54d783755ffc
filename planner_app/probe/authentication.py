"""``Authorization: Probe <token>``: a token that may only report for one server."""

from __future__ import annotations

from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from .models import ProbeToken


class ProbeTokenAuthentication(BaseAuthentication):
    """``Authorization: Probe <token>``: the GPU probe of one server; request.auth is the ProbeToken."""

    keyword = b"probe"

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("invalid Probe header: expected 'Probe <token>'")
        try:
            key = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("invalid probe token") from None
        token = (ProbeToken.objects.select_related("server__cluster__owner", "server__cluster__model")
                 .filter(key=key).first())
        if token is None or not token.server.cluster.owner.is_active:
            raise AuthenticationFailed("invalid probe token")
        return token.server.cluster.owner, token

    def authenticate_header(self, request):
        return "Probe"
