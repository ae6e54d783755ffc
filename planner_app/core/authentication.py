"""Token authentication with a short per-process cache.

Polling clients send the same token many times a second; looking it up in the
database each time is most of the cost of GET /api/v1/jobs/{id}/.  A token or
user that is deleted or deactivated stops working within TOKEN_CACHE_S.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.cache import cache
from rest_framework.authentication import TokenAuthentication


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
