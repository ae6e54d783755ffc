"""ASGI app of the standalone dispatcher (``python -m serving.dispatch serve``): Redis store, dispatch tokens."""

import os

from .http import DispatchApp
from .redis_store import AsyncRedisStore

app = DispatchApp(AsyncRedisStore(os.environ.get("CHAINPLAN_DISPATCH_REDIS", "redis://127.0.0.1:6379/0"),
                                  prefix=os.environ.get("CHAINPLAN_DISPATCH_PREFIX", "chainplan:dispatch")),
                  metrics_token=os.environ.get("CHAINPLAN_METRICS_TOKEN") or None)
