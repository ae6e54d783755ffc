"""Live dispatch for an adopted plan: join the fastest free chain, with leases.

``client`` is what serving code uses (HTTP or Redis-direct); ``redis_store`` and
``memory_store`` hold the state (Redis for any number of processes, memory for
the single-process embedded default); ``http`` is the ASGI service; ``plan``
compiles a plan document for the stores.  See docs/dispatcher.md.
"""

from .client import (AsyncDispatchClient, AsyncRedisDispatchClient, DispatchClient, DispatchError, Hop, Lease,
                     LeaseGone, NoAdoptedPlan, NoFreeChain, RedisDispatchClient)

__all__ = ["AsyncDispatchClient", "AsyncRedisDispatchClient", "DispatchClient", "DispatchError", "Hop", "Lease",
           "LeaseGone", "NoAdoptedPlan", "NoFreeChain", "RedisDispatchClient"]
