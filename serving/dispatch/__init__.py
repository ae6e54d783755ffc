"""Live dispatch for an adopted plan: join the fastest free chain, with leases.

- ``protocol``: what a store is (``DispatchStore``), its refusals (one ``DispatchError`` family),
  the lease, argument checks and ids, the server states;
- ``liveness``: the rules that turn failure reports, heartbeats and time into a server's state;
- the stores: ``redis_store`` (dispatch.lua on Redis, any number of processes; ``lua_keys`` names
  the script's keys) and ``memory_store`` (one process, the embedded default);
- ``snapshot``: compiles an adopted plan for the stores (the order and choices come from the
  core in ``solvers.dispatch_policy``, which the simulator shares);
- ``http``: the ASGI service; ``client``: what serving code uses (HTTP or Redis-direct);
- ``failover``: running a request with fail-over (a new lease and a resume when a hop fails).

See docs/dispatcher.md.
"""

from .client import (AsyncDispatchClient, AsyncRedisDispatchClient, DispatchClient, DispatchError, Hop,
                     InvalidRequest, Lease, LeaseGone, NoAdoptedPlan, NoFreeChain, RedisDispatchClient, ServerDown,
                     StoreClient)

__all__ = ["AsyncDispatchClient", "AsyncRedisDispatchClient", "DispatchClient", "DispatchError", "Hop",
           "InvalidRequest", "Lease", "LeaseGone", "NoAdoptedPlan", "NoFreeChain", "RedisDispatchClient", "ServerDown",
           "StoreClient"]
