"""Time inside Redis of dispatch.lua's hot path, one script file against another (e.g. before and after a change).

    flock /tmp/chainplan-heavy.lock .venv/bin/python bench/liveness_script_cost.py OLD.lua serving/dispatch/dispatch.lua

Each round loads a plan with free slots and runs batched calls of 8 acquires and 8 releases (the shape the
auto-pipelined client sends), alternating the files; the time per call is the delta of Redis's own
INFO commandstats (EVALSHA usec / calls), so the client's time is left out.  Other users of the same
Redis add to those counters: run it under the heavy-work lock.  Keys go under a unique prefix and are
deleted after each round.
"""

from __future__ import annotations

import argparse
import sys
import uuid
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from serving.dispatch.snapshot import chain_specs, compile_snapshot, snapshot_json  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scripts", nargs="+", help="dispatch.lua files to compare")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    ap.add_argument("--rounds", type=int, default=14)
    ap.add_argument("--calls", type=int, default=1500, help="timed script calls per round and file")
    args = ap.parse_args()
    r = redis.Redis.from_url(args.redis)
    text, fp = snapshot_json(compile_snapshot(1, chain_specs([(["a", "b"], [2, 2], 1.0, 64),
                                                              (["c"], [4], 2.0, 64)])))
    shas = {f: r.script_load(Path(f).read_text()) for f in args.scripts}
    per_call: dict[str, list[float]] = {f: [] for f in args.scripts}
    n = 0

    def batch() -> list:
        nonlocal n
        n += 1
        out: list = ["batch"]
        for j in range(8):
            out += ["acquire", f"L{n}_{j}", "", "0.5", 0]
        for j in range(8):
            out += ["release", f"L{n}_{j}"]
        return out

    for _ in range(args.rounds):
        for f, sha in shas.items():
            prefix = f"bench-script-{uuid.uuid4().hex[:8]}"
            key = prefix + ":{c1}:"
            r.evalsha(sha, 1, key, "plan", text, fp)
            for _ in range(200):                      # warm up
                r.evalsha(sha, 1, key, *batch())
            before = r.info("commandstats")["cmdstat_evalsha"]
            for _ in range(args.calls):
                r.evalsha(sha, 1, key, *batch())
            after = r.info("commandstats")["cmdstat_evalsha"]
            per_call[f].append((after["usec"] - before["usec"]) / (after["calls"] - before["calls"]))
            for k in r.scan_iter(match=prefix + ":*", count=1000):
                r.delete(k)
    for f, v in per_call.items():
        v.sort()
        print(f"{f}: {v[len(v) // 2]:.1f} µs per call of 16 operations (median of {len(v)} rounds; min {v[0]:.1f})")


if __name__ == "__main__":
    main()
