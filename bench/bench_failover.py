"""Fail-over of a Redis Cluster primary under dispatch load: what the dispatcher's clients see.

    flock /tmp/chainplan-heavy.lock .venv/bin/python bench/bench_failover.py --repeats 3   # writes bench/results/failover.md

Each repeat: the local cluster (scripts/redis_cluster.sh: 3 primaries + 3 replicas, cluster-node-timeout
1000 ms, on --port-base..+5), 6 planning clusters whose {cN} tags put two on each shard, --clients clients
(asyncio tasks sharing one AsyncRedisStore) acquiring (wait up to 10 s), holding 5-50 ms and releasing; after
--kill-at seconds the primary of two of them is SIGKILLed; the run goes on to --seconds.  Then the killed
node is started again (it rejoins as its replica's replica) before the next repeat.  The harness and the
meaning of every column: testbed/redis_failover.py.  With --compare-no-wait each repeat runs a second time
with CHAINPLAN_DISPATCH_REDIS_WAIT_MS=0 (no WAIT for the replica) for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from testbed.redis_failover import run_failover, start_cluster  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=9.0, help="length of each run")
    ap.add_argument("--kill-at", type=float, default=3.0, help="seconds into each run the primary is killed")
    ap.add_argument("--port-base", type=int, default=int(os.environ.get("CHAINPLAN_REDIS_CLUSTER_PORT", "7000")))
    ap.add_argument("--compare-no-wait", action="store_true", help="also run each repeat without WAIT")
    ap.add_argument("--lagging-replica", type=float, default=0.0, metavar="S",
                    help="also run each repeat with the victim's replica stopped (SIGSTOP) S seconds before the "
                         "kill and resumed right after: the WAITs time out, the grants meanwhile are lost")
    ap.add_argument("--keep", action="store_true", help="leave the cluster running afterwards")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "failover.md"))
    args = ap.parse_args()

    env = dict(os.environ, CHAINPLAN_REDIS_CLUSTER_PORT=str(args.port_base))
    was_up = subprocess.run(["bash", str(ROOT / "scripts" / "redis_cluster.sh"), "status"], env=env,
                            capture_output=True, text=True).returncode == 0
    load_before = os.getloadavg()
    configs = [("WAIT 1 250", None, 0.0)] + ([("no WAIT", "0", 0.0)] if args.compare_no_wait else [])
    if args.lagging_replica > 0:
        configs.append((f"WAIT 1 250, replica stopped {args.lagging_replica:g} s before the kill", None,
                        args.lagging_replica))
    rows: list[tuple[str, int, dict]] = []
    try:
        for rep in range(args.repeats):
            for name, wait, lag in configs:
                seeds = start_cluster(args.port_base)
                time.sleep(1.0)       # let the rejoined node settle as a replica
                if wait is None:
                    os.environ.pop("CHAINPLAN_DISPATCH_REDIS_WAIT_MS", None)
                else:
                    os.environ["CHAINPLAN_DISPATCH_REDIS_WAIT_MS"] = wait
                res = asyncio.run(run_failover(seeds, args.port_base, clients=args.clients, seconds=args.seconds,
                                               kill_at_s=args.kill_at, prefix=f"bench-failover-{rep}", seed=rep + 1,
                                               stop_replica_s=lag))
                row = res.row()
                row["first_errors"] = res.errors[:3]
                rows.append((name, rep + 1, row))
                print(name, rep + 1, row, flush=True)
        os.environ.pop("CHAINPLAN_DISPATCH_REDIS_WAIT_MS", None)
        start_cluster(args.port_base)
    finally:
        if not was_up and not args.keep:
            subprocess.run(["bash", str(ROOT / "scripts" / "redis_cluster.sh"), "stop"], env=env)
    load_after = os.getloadavg()

    lines = [
        "# Dispatcher state on Redis Cluster: a primary killed under load",
        "",
        "Regenerate: `flock /tmp/chainplan-heavy.lock .venv/bin/python bench/bench_failover.py --repeats 3"
        + (" --compare-no-wait" if args.compare_no_wait else "")
        + (f" --lagging-replica {args.lagging_replica:g}" if args.lagging_replica else "")
        + "` (harness: testbed/redis_failover.py).",
        "",
        f"Machine: {os.cpu_count()} CPU cores shared with other work (the six Redis nodes, the clients and "
        f"everything else); load average (1, 5, 15 min) {load_before[0]:.2f}, {load_before[1]:.2f}, "
        f"{load_before[2]:.2f} before and {load_after[0]:.2f}, {load_after[1]:.2f}, {load_after[2]:.2f} after.",
        "",
        f"Each run: {args.clients} clients in one process (one shared `AsyncRedisStore`, auto-pipelined per shard) "
        f"on 6 planning clusters, two per shard (by their `{{cN}}` tag), each with two chains of capacity 2 and 3 "
        f"(30 slots for {args.clients} clients: some always wait); hold 5-50 ms; wait up to 10 s; lease TTL 30 s "
        f"(longer than the run, so a leaked or lost lease cannot hide behind an expiry). At {args.kill_at:g} s "
        f"the primary of two of them gets SIGKILL; `cluster-node-timeout` 1000 ms; the run lasts {args.seconds:g} s.",
        "",
        "| WAIT | run | promotion s | victim clusters without a grant s | other shards: grants meanwhile | other "
        "shards: longest gap s | grants | waiters served / told / hung | over capacity (clients' count at every "
        "grant / sampled store states) | leaked slots | leases lost (holder told at release) | releases in flight "
        "at the kill answered false | unacknowledged replies | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, rep, r in rows:
        lines.append(
            f"| {name} | {rep} | {r['promoted_s']:.2f} | {r['gap_s']:.2f} | {r['other_grants_during']:,} | "
            f"{r['other_gap_s']:.3f} | {r['grants']:,} | {r['served']:,} / {r['told']} / {r['hung']} | "
            f"{r['over_capacity']} / {r['store_over']} (of {r['samples']} samples) | {r['leaked']} | {r['lost']} | "
            f"{r['release_retried']} | "
            f"{r['unacked']} | {r['errors']} |")
    for name, _, _ in configs:
        sel = [r for n, _, r in rows if n == name]
        if sel:
            lines += ["", f"{name}: promotion {min(r['promoted_s'] for r in sel):.2f}-{max(r['promoted_s'] for r in sel):.2f} s, "
                      f"victim clusters without a grant {min(r['gap_s'] for r in sel):.2f}-"
                      f"{max(r['gap_s'] for r in sel):.2f} s (mean {statistics.fmean(r['gap_s'] for r in sel):.2f} s), "
                      f"over capacity {sum(r['over_capacity'] + r['store_over'] for r in sel)}, leaked "
                      f"{sum(r['leaked'] for r in sel)}, lost {sum(r['lost'] for r in sel)}, hung "
                      f"{sum(r['hung'] for r in sel)}."]
    lines += [
        "",
        "Reading it: \"promotion\" is from the SIGKILL until a surviving node names a new owner of the victim's "
        "slot (`cluster-node-timeout` 1 s, then the replica's election); the victim shard's planning clusters grant "
        "again within a few tenths of a second after it (the clients retry with back-off capped at 0.25 s and "
        "refresh the slot map). The other shards never stop (`cluster-require-full-coverage no`). Every waiter "
        "of the victim shard was served (its wait of 10 s outlasts the fail-over; a shorter wait ends in a "
        "refusal, never a hang). With a replica that keeps up, `WAIT` changes nothing visible on loopback: "
        "the replica had every grant either way. The lagging-replica runs show what `WAIT` bounds: "
        "while the replica is stopped every WAIT times out (the victim shard then grants once per 250 ms turn), "
        "the replies go out unacknowledged and are counted. The replica that takes over lacks those grants, "
        "so the leases lost are at most the unacknowledged replies. Their holders were told at release "
        "(`release` answered false). A release in flight at the kill may also be answered false without any "
        "loss: its first try went through on the old primary and reached the replica, the answer was lost "
        "with the connection, and the retry on the new primary found nothing left to release. Those are "
        "counted apart, and the harness cannot tell them from a real loss. With the replica stopped, the "
        "lost leases' releases are themselves held by a timing-out WAIT across the kill and land in that "
        "column. Both columns together stay within the unacknowledged replies plus the releases in flight at "
        "the kill. With a replica that keeps up, no release outside the kill's moment was answered false. A lost lease's slot can be granted again while its "
        "holder still works, for at most one lease TTL (its next renewal is refused); here the holds (at most "
        "50 ms) ended before the promotion, so no instant was over capacity.",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
