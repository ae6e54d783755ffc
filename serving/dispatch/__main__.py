"""Run the dispatcher on its own (no Django): ``python -m serving.dispatch --help``.

The standalone dispatcher serves acquire/release/renew/state and metrics from a
Redis store; plans and dispatch tokens are put there by chainplan's web service
(or by ``plan`` / ``token`` below, for a dispatcher used without the planner).
"""

from __future__ import annotations

import argparse
import json
import sys

from solvers.dispatch_policy import LIVE_POLICIES

from .snapshot import PlanError, snapshot_from_document


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m serving.dispatch", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--redis", default=None, help="Redis URL (default redis://127.0.0.1:6379/0, or the Redis "
                                                   "Cluster named by CHAINPLAN_DISPATCH_REDIS_CLUSTER when set)")
    where.add_argument("--redis-cluster", metavar="HOST:PORT[,HOST:PORT...]", default=None,
                       help="seed nodes of a Redis Cluster, in place of --redis (see docs/dispatcher.md)")
    ap.add_argument("--prefix", default="chainplan:dispatch", help="key prefix in Redis (default %(default)s)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="serve the HTTP endpoints with uvicorn")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8001)
    s.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (they share Redis)")
    p = sub.add_parser("plan", help="dispatch cluster CLUSTER by a plan document (JSON file, '-' for stdin)")
    p.add_argument("cluster", type=int)
    p.add_argument("file", help="plan document; 'none' withdraws the plan")
    p.add_argument("--plan-id", type=int, default=None)
    p.add_argument("--policy", default="jffc", choices=LIVE_POLICIES)
    p.add_argument("--ttl", type=float, default=30.0, help="lease time to live in seconds")
    t = sub.add_parser("token", help="allow TOKEN to dispatch for CLUSTER",
                       epilog="A token that begins with '-' goes after '--': token -- 1 -Abc...")
    t.add_argument("cluster", type=int)
    t.add_argument("token")
    args = ap.parse_args(argv)
    import os

    from .redis_store import cluster_url
    source = "--redis-cluster"
    if args.redis_cluster is None and args.redis is None:
        args.redis_cluster = os.environ.get("CHAINPLAN_DISPATCH_REDIS_CLUSTER", "").strip() or None
        source = "CHAINPLAN_DISPATCH_REDIS_CLUSTER"
    if args.redis_cluster is not None:
        try:
            args.redis = cluster_url(args.redis_cluster)
        except ValueError as exc:
            ap.error(f"{source}: {exc}")
    args.redis = args.redis or "redis://127.0.0.1:6379/0"

    if args.cmd == "serve":
        import uvicorn
        os.environ.pop("CHAINPLAN_DISPATCH_REDIS_CLUSTER", None)
        os.environ["CHAINPLAN_DISPATCH_REDIS"] = args.redis
        os.environ["CHAINPLAN_DISPATCH_PREFIX"] = args.prefix
        uvicorn.run("serving.dispatch.standalone:app", host=args.host, port=args.port, workers=args.workers,
                    log_level="warning", access_log=False)
        return 0

    from .http import digest
    from .redis_store import RedisStore
    store = RedisStore(args.redis, prefix=args.prefix)
    if args.cmd == "token":
        store.put_token(digest(args.token), args.cluster)
        return 0
    if args.file == "none":
        store.set_plan(args.cluster, None)
        return 0
    try:
        doc = json.load(sys.stdin if args.file == "-" else open(args.file))
        snap = snapshot_from_document(args.plan_id, doc, policy=args.policy, ttl_s=args.ttl)
    except (OSError, ValueError, PlanError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(store.set_plan(args.cluster, snap))
    return 0


if __name__ == "__main__":
    sys.exit(main())
