"""Run the gateway on its own (no Django): ``python -m serving.gateway --help``.

    python -m serving.gateway serve --config gateway.json --dispatch redis://127.0.0.1:6379/0
    python -m serving.gateway serve --model tiny --cluster 1 --engines-file engines.json \\
        --dispatch memory --plan 1=plan.json --key 1=sk-local          # everything in one process
    python -m serving.gateway serve --model tiny-sp --cluster 1 --swarm-file swarm.json \\
        --dispatch redis://127.0.0.1:6379/0                            # a PETALS swarm's chains
    python -m serving.gateway key CLUSTER KEY --redis URL              # allow a key without the service

Leases come from the dispatcher's store directly (``--dispatch memory`` or a Redis URL: the
Redis-direct path) or from its HTTP endpoints (``--dispatch http://HOST:PORT`` with
``--dispatch-token CLUSTER=TOKEN``).  Keys are looked up in the same store (or ``--keys-redis``);
the service (``planner_app``) issues them and mirrors their digests there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable

from .params import Limits

ENV_DEFAULT_PREFIX = "chainplan:dispatch"


def _pairs(values: list[str], flag: str) -> list[tuple[int, str]]:
    out = []
    for v in values:
        cluster, sep, rest = v.partition("=")
        if not sep or not cluster.isdigit() or not rest:
            raise ValueError(f"{flag}: expected CLUSTER=VALUE, got {v!r}")
        out.append((int(cluster), rest))
    return out


def build(args: argparse.Namespace):
    """(app, description) from the parsed ``serve`` arguments; ValueError names the flag at fault."""
    from serving.dispatch.protocol import DispatchStore

    from .app import GatewayConfig, ServedModel, create_app
    from .config import load_models, models_from_dict
    from .keys import StoreKeys, key_digest
    from .leases import HttpLeases, StoreLeases

    if args.config:
        models: list[ServedModel] = load_models(args.config)
    elif args.model and args.cluster and bool(args.engines_file) != bool(args.swarm_file):
        engine = ({"engine": "openai", "engines_file": args.engines_file} if args.engines_file
                  else {"engine": "petals", "swarm_file": args.swarm_file})
        if args.tokenizer:
            if not args.engines_file:
                raise ValueError("--tokenizer: only with --engines-file (a PETALS swarm's client reads its own)")
            engine["tokenizer"] = args.tokenizer
        if args.expected_step_s is not None:
            engine["expected_step_s"] = args.expected_step_s
        models = models_from_dict({"models": [{"name": args.model, "cluster": args.cluster, **engine}]},
                                  base_dir=Path.cwd())
    else:
        raise ValueError("--config FILE, or --model NAME --cluster ID with one of --engines-file FILE "
                         "(openai engines) or --swarm-file FILE (a PETALS swarm), is required")

    startup: list[Callable[[], Awaitable[Any]]] = []
    dispatch = args.dispatch
    key_store: DispatchStore
    if dispatch == "memory":
        from serving.dispatch.memory_store import MemoryStore
        store: DispatchStore = MemoryStore()
        leases: Any = StoreLeases(store)
        key_store = store
    elif dispatch.startswith(("redis://", "rediss://", "unix://")):
        from serving.dispatch.redis_store import AsyncRedisStore
        store = AsyncRedisStore(dispatch, prefix=args.prefix)
        leases, key_store = StoreLeases(store), store
    elif dispatch.startswith(("http://", "https://")):
        leases = HttpLeases(dispatch, dict(_pairs(args.dispatch_token, "--dispatch-token")))
        if args.keys_redis:
            from serving.dispatch.redis_store import AsyncRedisStore
            key_store = AsyncRedisStore(args.keys_redis, prefix=args.prefix)
        else:
            from serving.dispatch.memory_store import MemoryStore
            key_store = MemoryStore()
        store = key_store
    else:
        raise ValueError(f"--dispatch: expected 'memory', a redis:// URL or an http:// URL, got {dispatch!r}")

    if args.plan:
        if dispatch != "memory":
            raise ValueError("--plan: only with --dispatch memory (otherwise the service or "
                             "`python -m serving.dispatch plan` gives the dispatcher its plan)")
        from serving.dispatch.snapshot import PlanError, snapshot_from_document
        for cluster, path in _pairs(args.plan, "--plan"):
            try:
                with open(path) as fh:
                    snap = snapshot_from_document(None, json.load(fh), ttl_s=args.lease_ttl)
            except (OSError, ValueError, PlanError) as exc:
                raise ValueError(f"--plan {cluster}={path}: {exc}") from None
            startup.append(lambda c=cluster, s=snap: store.set_plan(c, s))
    for cluster, key in _pairs(args.key, "--key"):
        startup.append(lambda c=cluster, k=key: key_store.put_token(key_digest(k), c))

    limits = Limits(max_tokens=args.max_tokens, default_max_tokens=min(args.default_max_tokens, args.max_tokens),
                    max_prompt_chars=args.max_prompt_chars)
    if args.failover_attempts < 1:
        raise ValueError(f"--failover-attempts: at least 1 (no fail-over), got {args.failover_attempts}")
    if not args.failover_window_s > 0:
        raise ValueError(f"--failover-window-s: a positive number of seconds, got {args.failover_window_s}")
    config = GatewayConfig(models=models, keys=StoreKeys(key_store), leases=leases, limits=limits,
                           queue_wait_s=args.queue_wait_s, max_body_bytes=args.max_body_bytes,
                           failover_attempts=args.failover_attempts, failover_window_s=args.failover_window_s,
                           metrics_token=args.metrics_token or None)
    names = ", ".join(f"{m.name} (cluster {m.cluster}, {m.engine.name})" for m in models)
    return create_app(config, startup=startup), names


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m serving.gateway", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prefix", default=ENV_DEFAULT_PREFIX, help="the dispatcher's key prefix in Redis (default %(default)s)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="serve the OpenAI API with uvicorn")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8002)
    s.add_argument("--config", help="gateway config (JSON): the models, each with its cluster and engine")
    s.add_argument("--model", help="one model's name (with --cluster and --engines-file, instead of --config)")
    s.add_argument("--cluster", type=int)
    s.add_argument("--engines-file", help="the engines file `python -m solvers export --engines-file` wrote")
    s.add_argument("--swarm-file", help="instead of --engines-file: the PETALS swarm file `python -m "
                                        "serving.petals.launch` wrote (the petals engine)")
    s.add_argument("--tokenizer", help="with --engines-file: the model's local directory (its tokenizer and chat "
                                       "template), so that an answer cut by a failed chain resumes on another")
    s.add_argument("--expected-step-s", type=float, default=None,
                   help="a token step's expected time on the chains (a hop silent for max(2 s, 10x this) is taken "
                        "for hung; default 0.1)")
    s.add_argument("--failover-attempts", type=int, default=3,
                   help="chains a request may try when hops fail (default %(default)s: the first and two fail-overs)")
    s.add_argument("--failover-window-s", type=float, default=30.0,
                   help="from a request's first hop failure, the longest it waits for a new chain (default %(default)s)")
    s.add_argument("--dispatch", default="memory",
                   help="where leases come from: 'memory' (in this process), redis://... (the dispatcher's store, "
                        "directly) or http://... (its HTTP endpoints); default %(default)s")
    s.add_argument("--dispatch-token", action="append", default=[], metavar="CLUSTER=TOKEN",
                   help="dispatch token per cluster, with an http:// --dispatch")
    s.add_argument("--keys-redis", help="Redis holding the gateway keys' digests, with an http:// --dispatch")
    s.add_argument("--key", action="append", default=[], metavar="CLUSTER=KEY", help="allow KEY for CLUSTER")
    s.add_argument("--plan", action="append", default=[], metavar="CLUSTER=FILE",
                   help="with --dispatch memory: dispatch CLUSTER by this plan document")
    s.add_argument("--lease-ttl", type=float, default=30.0, help="lease TTL for --plan (default %(default)s s)")
    s.add_argument("--queue-wait-s", type=float, default=30.0,
                   help="how long a request waits for a free slot before 429 (default %(default)s)")
    s.add_argument("--max-tokens", type=int, default=4096, help="largest max_tokens accepted (default %(default)s)")
    s.add_argument("--default-max-tokens", type=int, default=256, help="chat requests naming none (default %(default)s)")
    s.add_argument("--max-prompt-chars", type=int, default=200_000)
    s.add_argument("--max-body-bytes", type=int, default=1 << 20)
    s.add_argument("--metrics-token", default=os.environ.get("CHAINPLAN_METRICS_TOKEN", ""),
                   help="when set, GET /metrics and /v1/metrics need 'Authorization: Bearer TOKEN' "
                        "(default: $CHAINPLAN_METRICS_TOKEN; unset: open)")
    k = sub.add_parser("key", help="allow KEY for CLUSTER in the dispatcher's Redis (without the service)")
    k.add_argument("cluster", type=int)
    k.add_argument("key")
    k.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = ap.parse_args(argv)

    if args.cmd == "key":
        from serving.dispatch.redis_store import RedisStore

        from .keys import key_digest
        RedisStore(args.redis, prefix=args.prefix).put_token(key_digest(args.key), args.cluster)
        return 0
    try:
        app, names = build(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import uvicorn
    print(f"gateway: OpenAI base URL http://{args.host}:{args.port}/v1 serving {names}", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
