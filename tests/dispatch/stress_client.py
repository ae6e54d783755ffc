"""One process of simulated serving clients for the stress tests (run by test_live.py).

    python -m tests.dispatch.stress_client URL CLUSTER TOKEN CLIENTS SECONDS LOG SEED

Each client loops: acquire (waits up to 30 s), hold for a random time, release.
Every grant and release is appended to LOG as a JSON line, flushed at once, so a
process killed with SIGKILL leaves an exact record of the leases it held.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time

from serving.dispatch import AsyncDispatchClient, NoFreeChain


async def main(url, cluster, token, clients, seconds, log_path, seed):
    rng = random.Random(seed)
    log = open(log_path, "a", buffering=1)
    end = time.monotonic() + seconds
    async with AsyncDispatchClient(url, cluster, token, max_connections=clients) as client:
        async def one(i):
            while time.monotonic() < end:
                try:
                    async with client.acquire(wait_s=30) as lease:
                        log.write(json.dumps({"c": i, "ev": "grant", "lease": lease.lease, "chain": lease.chain,
                                              "plan": lease.plan, "expires_at": lease.expires_at,
                                              "ttl_s": lease.ttl_s, "waited_s": lease.waited_s}) + "\n")
                        await asyncio.sleep(rng.uniform(0.01, 0.25))
                        # logged before the context manager releases: a kill in between leaves a lease
                        # that may or may not have been released, never one wrongly counted as released
                        log.write(json.dumps({"c": i, "ev": "release", "lease": lease.lease}) + "\n")
                except NoFreeChain:
                    log.write(json.dumps({"c": i, "ev": "timeout"}) + "\n")
        await asyncio.gather(*(one(i) for i in range(clients)))


if __name__ == "__main__":
    url, cluster, token, clients, seconds, log_path, seed = sys.argv[1:8]
    asyncio.run(main(url, int(cluster), token, int(clients), float(seconds), log_path, int(seed)))
