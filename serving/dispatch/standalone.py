"""ASGI app of the standalone dispatcher (``python -m serving.dispatch serve``): Redis store, dispatch tokens.

``CHAINPLAN_DISPATCH_REDIS_CLUSTER`` (seed list host:port,...) selects a Redis Cluster, else
``CHAINPLAN_DISPATCH_REDIS`` (a URL) a single Redis."""

import os

from .http import DispatchApp
from .redis_store import AsyncRedisStore, store_url_from_env

app = DispatchApp(AsyncRedisStore(store_url_from_env("redis://127.0.0.1:6379/0"),
                                  prefix=os.environ.get("CHAINPLAN_DISPATCH_PREFIX", "chainplan:dispatch")),
                  metrics_token=os.environ.get("CHAINPLAN_METRICS_TOKEN") or None)
