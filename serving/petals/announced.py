"""What a PETALS swarm announces about its servers, read from its DHT (runs inside .venv-petals).

``python -m serving.petals.announced --swarm-file swarm.json [--every 2]`` joins the swarm's DHT as a
client and, every ``--every`` seconds, prints one JSON line: for each of the plan's servers (the swarm
file's ``peers``: server id -> PETALS peer id) what its latest announcement says::

    {"t": 1733550000.1, "servers": {"a": {"state": "online", "start_block": 0, "end_block": 2,
     "throughput": 1.0, "cache_tokens_left": 4096}, "b": {"state": "absent"}}}

``state`` is PETALS' own ``ServerState`` in lower case (``joining`` while a server loads its blocks,
``online``, ``offline`` when it announced that it leaves: a clean shutdown, or a move of its blocks),
or ``absent`` when no unexpired announcement of that peer is in the DHT for any block.  A crashed server
stays ``online`` here until its announcement expires (twice its ``--update_period``): this view is the
runtime's word on joins, leaves and block ranges, not a crash detector (failure reports and heartbeats
are; docs/liveness.md).  ``serving.petals.runtime_view`` turns these lines into server states.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _num_blocks(model_dir: str) -> int:
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if isinstance(cfg.get(key), int):
            return cfg[key]
    raise SystemExit(f"{model_dir}/config.json names no layer count")


def snapshot(infos, peers: dict[str, str]) -> dict[str, dict]:
    """Per plan server, its announced state and range from ``get_remote_module_infos``' answer."""
    by_peer: dict[str, dict] = {}
    for index, info in enumerate(infos):
        for peer_id, server in (info.servers if info is not None else {}).items():
            seen = by_peer.setdefault(peer_id.to_base58(), {"blocks": [], "info": server})
            seen["blocks"].append(index)
            if server.state.value < seen["info"].state.value:      # the least ready block speaks for the server
                seen["info"] = server
    out = {}
    for server_id, peer in peers.items():
        seen = by_peer.get(peer)
        if seen is None:
            out[server_id] = {"state": "absent"}
            continue
        s = seen["info"]
        blocks = seen["blocks"]
        out[server_id] = {"state": s.state.name.lower(),
                          "start_block": s.start_block if s.start_block is not None else min(blocks),
                          "end_block": s.end_block if s.end_block is not None else max(blocks) + 1,
                          "throughput": s.throughput, "cache_tokens_left": s.cache_tokens_left}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Print what a PETALS swarm announces about the plan's servers, "
                                            "one JSON line per period")
    p.add_argument("--swarm-file", required=True, help="the swarm file serving.petals.launch wrote")
    p.add_argument("--every", type=float, default=2.0, help="seconds between reads (default 2)")
    p.add_argument("--count", type=int, default=0, help="stop after this many lines (0: until stopped)")
    a = p.parse_args(argv)
    if a.every <= 0:
        p.error("--every must be positive")
    with open(a.swarm_file) as f:
        swarm = json.load(f)
    from hivemind import DHT
    from petals.utils.dht import get_remote_module_infos
    from petals.data_structures import UID_DELIMITER

    n = _num_blocks(swarm["model_dir"])
    uids = [f"{swarm['dht_prefix']}{UID_DELIMITER}{i}" for i in range(n)]
    parent = os.getppid()
    dht = DHT(initial_peers=swarm["initial_peers"], client_mode=True, start=True)
    printed = 0
    try:
        while os.getppid() == parent:    # a side-car killed outright leaves no reader behind
            infos = get_remote_module_infos(dht, uids, latest=True)
            line = {"t": time.time(), "servers": snapshot(infos, swarm["peers"])}
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()
            printed += 1
            if a.count and printed >= a.count:
                break
            time.sleep(a.every)
    except (BrokenPipeError, KeyboardInterrupt):
        pass
    finally:
        sys.stdout.flush()
    if os.getppid() != parent:         # nobody will stop our DHT process: stop it ourselves
        try:
            dht.shutdown()
        except Exception:  # noqa: BLE001 - exiting either way
            pass
    os._exit(0)   # hivemind's threads can block the interpreter's teardown


if __name__ == "__main__":
    raise SystemExit(main())
