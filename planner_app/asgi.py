"""ASGI entry point: the live dispatcher's endpoints in front of the Django API, on one host and port.

    uvicorn planner_app.asgi:application             # everything (scripts/serve.sh, compose "web")
    uvicorn planner_app.asgi:dispatcher_application  # the dispatcher's endpoints only (compose "dispatcher")
    uvicorn planner_app.asgi:gateway_application     # the OpenAI gateway only (compose "gateway")

acquire/release/renew/state and /api/v1/dispatch/metrics go to serving.dispatch's ASGI app
(store only, never the database); every other path goes to Django as a WSGI app in a pool of
CHAINPLAN_WEB_THREADS threads (a2wsgi), so Django's sync views run concurrently as they did
under gunicorn's threads (Django's own ASGI handler runs every sync view in one thread).
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "planner_app.settings")

from a2wsgi import WSGIMiddleware  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

django_application = WSGIMiddleware(get_wsgi_application(), workers=int(os.environ.get("CHAINPLAN_WEB_THREADS", "8")))

from asgiref.sync import sync_to_async  # noqa: E402
from django.conf import settings  # noqa: E402

from serving.dispatch.http import DispatchApp, mount  # noqa: E402

from .dispatch import background  # noqa: E402
from .dispatch.store import async_store  # noqa: E402
from .gateway import background as gateway_background  # noqa: E402
from .liveness import background as liveness_background  # noqa: E402


def _owner_check(key: str, cluster: int) -> bool | None:
    """True: the API token's user owns the cluster; False: they do not (or it does not exist); None: bad token."""
    from django.db import close_old_connections
    from rest_framework.authtoken.models import Token

    from .catalog.models import Cluster
    close_old_connections()
    token = Token.objects.select_related("user").filter(key=key).first()
    if token is None or not token.user.is_active:
        return None
    return Cluster.objects.filter(pk=cluster, owner=token.user).exists()


_owner_auth = sync_to_async(_owner_check, thread_sensitive=False)


def _dispatcher() -> DispatchApp:
    store = async_store()
    # the dispatcher's process keeps the store in step with the database: plans and dispatch tokens,
    # and the gateway's keys (the gateway reads them from the same store); and it records the store's server
    # transitions and heals the plan (liveness)
    return DispatchApp(store, owner_auth=_owner_auth,
                       background=background.tasks(store) + gateway_background.tasks(store)
                       + liveness_background.tasks(store),
                       metrics_token=settings.METRICS_TOKEN or None)


def build_gateway():
    """The OpenAI gateway under /v1/ (docs/gateway.md): leases and keys from the dispatcher's own store;
    the models it serves from the file CHAINPLAN_GATEWAY_CONFIG names (none without it: /v1/ answers 404s).
    Built from the current settings (tests build one after pointing GATEWAY_CONFIG at their file)."""
    from serving.gateway.app import GatewayConfig, create_app
    from serving.gateway.config import load_models
    from serving.gateway.keys import StoreKeys
    from serving.gateway.leases import StoreLeases
    store = async_store()
    path = settings.GATEWAY_CONFIG
    return create_app(GatewayConfig(models=load_models(path) if path else [], keys=StoreKeys(store),
                                    leases=StoreLeases(store), metrics_token=settings.METRICS_TOKEN or None))


def with_gateway(gateway, rest):
    """``gateway`` answers /v1/..., ``rest`` (the dispatcher in front of Django) everything else."""
    from serving.gateway.app import is_gateway_path

    async def app(scope, receive, send):
        if scope["type"] == "http" and is_gateway_path(scope["path"]):
            await gateway(scope, receive, send)
        else:
            await rest(scope, receive, send)
    return app


dispatcher_application = _dispatcher()
gateway_application = build_gateway()
application = with_gateway(gateway_application, mount(dispatcher_application, django_application))
