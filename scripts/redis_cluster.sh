#!/usr/bin/env bash
# A local Redis Cluster for the dispatcher: 3 primaries + 3 replicas on loopback.
#
#   bash scripts/redis_cluster.sh start   # prints the seed list 127.0.0.1:7000,...,127.0.0.1:7005
#   bash scripts/redis_cluster.sh stop    # stops the nodes it started and removes their files
#   bash scripts/redis_cluster.sh status
#
# CHAINPLAN_REDIS_CLUSTER_PORT moves the base port (default 7000: ports BASE..BASE+5).
# CHAINPLAN_REDIS_CLUSTER_DIR  where the nodes' files live (default /tmp/chainplan-redis-cluster-BASE).
# CHAINPLAN_REDIS_CLUSTER_NODE_TIMEOUT_MS  cluster-node-timeout (default 1000: a dead primary's replica
#                                          takes over in about 2-3 s).
# cluster-require-full-coverage is off: while one shard fails over, the other shards keep serving.
# Both commands are idempotent: start on a running, healthy cluster only prints the seeds again.
set -euo pipefail

BASE="${CHAINPLAN_REDIS_CLUSTER_PORT:-7000}"
DIR="${CHAINPLAN_REDIS_CLUSTER_DIR:-/tmp/chainplan-redis-cluster-$BASE}"
NODE_TIMEOUT="${CHAINPLAN_REDIS_CLUSTER_NODE_TIMEOUT_MS:-1000}"
HOST=127.0.0.1
PORTS=()
for i in 0 1 2 3 4 5; do PORTS+=($((BASE + i))); done
SEEDS=$(printf "$HOST:%s," "${PORTS[@]}"); SEEDS=${SEEDS%,}

die() { echo "redis_cluster.sh: $*" >&2; exit 1; }

cli() { redis-cli -h "$HOST" -p "$1" "${@:2}"; }

ours() {  # is the process in pidfile $1 alive and ours (a redis-server)?
  [[ -f "$1" ]] || return 1
  local pid; pid=$(cat "$1" 2>/dev/null) || return 1
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && grep -q redis-server "/proc/$pid/cmdline" 2>/dev/null
}

cluster_ok() { cli "${PORTS[0]}" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; }

wait_ok() {  # every node sees the cluster ok, all 16384 slots assigned, every primary's replica online
  local deadline=$((SECONDS + ${1:-60}))
  while ((SECONDS < deadline)); do
    local good=1
    for p in "${PORTS[@]}"; do
      local info; info=$(cli "$p" cluster info 2>/dev/null) || { good=0; break; }
      grep -q '^cluster_state:ok' <<<"$info" && grep -q '^cluster_slots_ok:16384' <<<"$info" || { good=0; break; }
      # and every primary has its replica in sync (WAIT needs it)
      local repl; repl=$(cli "$p" info replication 2>/dev/null) || { good=0; break; }
      if grep -q '^role:master' <<<"$repl"; then
        grep -q 'state=online' <<<"$repl" || { good=0; break; }
      fi
    done
    ((good)) && return 0
    sleep 0.2
  done
  return 1
}

start() {
  command -v redis-server >/dev/null || die "redis-server not found (apt-get install redis-server)"
  mkdir -p "$DIR"
  local started=0
  for p in "${PORTS[@]}"; do
    local nd="$DIR/$p"
    mkdir -p "$nd"
    if ours "$nd/redis.pid"; then continue; fi
    if cli "$p" ping >/dev/null 2>&1; then
      die "port $p is taken by a Redis this script did not start (move the base: CHAINPLAN_REDIS_CLUSTER_PORT)"
    fi
    # the daemon must not inherit our open files (a caller's flock on a lock file would be held by it for as
    # long as the node lives): close every descriptor above stderr first
    ( for fd in /proc/$BASHPID/fd/*; do n=${fd##*/}; ((n > 2)) && eval "exec $n>&-"; done 2>/dev/null
      exec redis-server --port "$p" --bind "$HOST" --dir "$nd" --daemonize yes --pidfile "$nd/redis.pid" \
      --logfile "$nd/redis.log" --cluster-enabled yes --cluster-config-file "$nd/nodes.conf" \
      --cluster-node-timeout "$NODE_TIMEOUT" --cluster-require-full-coverage no --appendonly no --save '' --protected-mode no \
      --repl-diskless-sync yes --repl-diskless-sync-delay 0 >/dev/null )
    started=1
  done
  for p in "${PORTS[@]}"; do     # wait for every node to answer
    local deadline=$((SECONDS + 20))
    until cli "$p" ping >/dev/null 2>&1; do
      ((SECONDS < deadline)) || die "node $p did not start (see $DIR/$p/redis.log)"
      sleep 0.1
    done
  done
  if ! cluster_ok; then
    local known; known=$(cli "${PORTS[0]}" cluster info | sed -n 's/^cluster_known_nodes:\([0-9]*\).*/\1/p')
    if [[ "$known" == "1" ]]; then   # fresh nodes: make the cluster
      local addrs=(); for p in "${PORTS[@]}"; do addrs+=("$HOST:$p"); done
      redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes >"$DIR/create.log" 2>&1 \
        || die "cluster create failed: $(tail -5 "$DIR/create.log")"
    fi
  fi
  wait_ok 60 || die "the cluster did not reach cluster_state:ok (see $DIR/*/redis.log)"
  echo "$SEEDS"
}

stop() {
  [[ -d "$DIR" ]] || return 0
  for p in "${PORTS[@]}"; do
    local pf="$DIR/$p/redis.pid"
    if ours "$pf"; then
      local pid; pid=$(cat "$pf")
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$DIR"
}

status() {
  if cluster_ok; then echo "ok $SEEDS"; else echo "down"; return 1; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
