"""Token authentication with a short per-process cache.

Polling clients send the same token many times a second; looking it up in the
database each time is most of the cost of GET /api/v1/jobs/{id}/.  A token or
user that is deleted or deactivated stops working within TOKEN_CACHE_S.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.cache import cache
from rest_framework.authentication import BaseAuthentication, TokenAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed


class CachedTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key):
        # the cache key is a digest, so the token itself is not kept as a key in memory
        cache_key = "token:" + hashlib.sha256(key.encode()).hexdigest()
        hit = cache.get(cache_key)
        if hit is not None:
            return hit
        user, token = super().authenticate_credentials(key)
        cache.set(cache_key, (user, token), timeout=settings.TOKEN_CACHE_S)
        return user, token


class ProbeTokenAuthentication(BaseAuthentication):
    """``Authorization: Probe <token>``: the GPU probe of one server; request.auth is the ProbeToken."""

    keyword = b"probe"

    def authenticate(self, request):
        from .models import ProbeToken
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
