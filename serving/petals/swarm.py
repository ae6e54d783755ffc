"""Launch a plan's PETALS swarm on loopback and stop it cleanly (standard library only).

One PETALS server per server the plan uses, pinned to the planned block range, with a
KV budget (``--attn_cache_tokens``) of the plan's cache slots times the longest request,
a fixed throughput (so PETALS' own routing does not re-measure and re-balance), and only
loopback addresses.  The first server starts a new private swarm; the others join it.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import procs

PEER_RE = re.compile(r"Running a server on \[.*?/p2p/(\w+)")
DEFAULT_DHT_PREFIX = "chainplan-tiny"


class SwarmError(RuntimeError):
    pass


@dataclass
class ServerSpec:
    """One PETALS server: ``blocks`` is [start, end) of the model's blocks."""
    id: str
    start_block: int
    end_block: int
    cache_tokens: int
    device: str = "cpu"
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    # one-way delay added in each direction by a relay in front of the server (None: no relay);
    # the server announces the relay's address, so every peer pays the round trip
    one_way_delay_ms: float | None = None
    # the plan's own run_server flags (solvers.export.petals_server_args, model path and swarm flags
    # removed): block range, KV budget, throughput; None: built here from the fields above
    plan_args: list[str] | None = None

    @property
    def max_length(self) -> int | None:
        """The longest sequence (prompt + answer) one session may reach on this server
        (``--inference_max_length``; None: PETALS' default)."""
        if self.plan_args is None:
            return max(self.cache_tokens, 1)
        if "--inference_max_length" in self.plan_args:
            return int(self.plan_args[self.plan_args.index("--inference_max_length") + 1])
        return None


@dataclass
class RunningServer:
    spec: ServerSpec
    port: int
    proc: subprocess.Popen
    log_path: Path
    peer_id: str | None = None
    pids: set[int] = field(default_factory=set)
    public_port: int | None = None     # the delay relay's port, announced instead of ``port``

    @property
    def maddr(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.public_port or self.port}/p2p/{self.peer_id}"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def plan_specs(plan_doc: dict[str, Any], scenario: Any | None = None, *, max_len: int | None = None,
               device: str = "cpu", env: dict[str, str] | None = None,
               one_way_ms: dict[str, float] | None = None) -> list[ServerSpec]:
    """One ServerSpec per server the plan uses, its run_server flags from ``solvers.export`` (the one
    source of truth for block ranges, KV budget, dtype and throughput).

    ``max_len``: the KV budget of a server the export gives none (no known longest sequence);
    ``one_way_ms``: a delay relay in front of each server (None: none)."""
    from solvers.export import petals_server_specs
    exported, _warnings = petals_server_specs(plan_doc, scenario, "MODEL", new_swarm=False)
    specs = []
    for e in exported:
        cache_tokens = e["attn_cache_tokens"] or max_len
        if not cache_tokens:
            raise SwarmError(f"server {e['server']}: the plan gives no KV budget (--attn_cache_tokens) and no "
                             "max_len was given")
        specs.append(ServerSpec(e["server"], e["start_block"], e["end_block"], cache_tokens=cache_tokens,
                                device=device, env=dict(env or {}), plan_args=list(e["args"][1:]),
                                one_way_delay_ms=None if one_way_ms is None else one_way_ms[e["server"]]))
    return specs


@dataclass(frozen=True)
class SwarmInfo:
    """What a client needs to reach a launched swarm: written by ``serving.petals.launch`` once every
    server is up, read by the gateway's ``petals`` engine.  ``peers`` maps the plan's server ids (what a
    dispatcher lease names) to the PETALS peer ids the servers announced."""

    model_dir: str
    model_name: str
    dht_prefix: str
    initial_peers: tuple[str, ...]
    peers: dict[str, str]
    max_length: int | None = None       # the longest sequence every server takes (None: not known)

    def to_dict(self) -> dict[str, Any]:
        return {"model_dir": self.model_dir, "model_name": self.model_name, "dht_prefix": self.dht_prefix,
                "initial_peers": list(self.initial_peers), "peers": dict(self.peers), "max_length": self.max_length}

    @classmethod
    def from_dict(cls, doc: Any) -> "SwarmInfo":
        if not isinstance(doc, dict):
            raise SwarmError("swarm file: expected a JSON object")
        for key in ("model_dir", "model_name", "dht_prefix"):
            if not isinstance(doc.get(key), str) or not doc[key]:
                raise SwarmError(f"swarm file: {key}: expected a non-empty string")
        peers_list = doc.get("initial_peers")
        if not isinstance(peers_list, list) or not peers_list or not all(isinstance(p, str) for p in peers_list):
            raise SwarmError("swarm file: initial_peers: expected a non-empty list of multiaddrs")
        peers = doc.get("peers")
        if not isinstance(peers, dict) or not peers or not all(
                isinstance(k, str) and isinstance(v, str) and v for k, v in peers.items()):
            raise SwarmError("swarm file: peers: expected an object of server id -> PETALS peer id")
        max_length = doc.get("max_length")
        if max_length is not None and (not isinstance(max_length, int) or isinstance(max_length, bool) or max_length < 1):
            raise SwarmError("swarm file: max_length: expected a positive integer or null")
        return cls(doc["model_dir"], doc["model_name"], doc["dht_prefix"], tuple(peers_list), dict(peers), max_length)

    @classmethod
    def load(cls, path: str | Path) -> "SwarmInfo":
        try:
            doc = json.loads(Path(path).read_text())
        except OSError as exc:
            raise SwarmError(f"swarm file {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise SwarmError(f"swarm file {path}: not JSON ({exc})") from None
        return cls.from_dict(doc)

    def save(self, path: str | Path) -> None:
        tmp = Path(f"{path}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        tmp.replace(path)       # readers never see half a file


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_args(spec: ServerSpec, model_dir: str, port: int, identity: Path, initial_peers: list[str],
                dht_prefix: str, throughput: float = 1.0, announce_port: int | None = None) -> list[str]:
    if spec.plan_args is not None:
        args = [str(model_dir), *spec.plan_args]
        if "--throughput" not in spec.plan_args:
            args += ["--throughput", str(throughput)]
    else:
        args = [str(model_dir), "--block_indices", f"{spec.start_block}:{spec.end_block}",
                "--throughput", str(throughput), "--attn_cache_tokens", str(spec.cache_tokens),
                "--inference_max_length", str(max(spec.cache_tokens, 1))]
    # what only this loopback swarm decides: addresses, identity, prefix, device, no NAT traversal
    args += ["--dht_prefix", dht_prefix, "--host_maddrs", f"/ip4/127.0.0.1/tcp/{port}",
             "--identity_path", str(identity), "--no_auto_relay", "--skip_reachability_check",
             "--device", spec.device, "--num_handlers", "1"]
    if "--torch_dtype" not in args:
        args += ["--torch_dtype", "float32", "--quant_type", "none"]
    if announce_port is not None:
        args += ["--announce_maddrs", f"/ip4/127.0.0.1/tcp/{announce_port}"]
    args += ["--initial_peers", *initial_peers] if initial_peers else ["--new_swarm"]
    return args + list(spec.extra_args)


class Swarm(procs.StartStop):
    """``with Swarm(specs, model_dir, python=..., workdir=...) as swarm:`` launches and stops."""

    def __init__(self, specs: list[ServerSpec], model_dir: str, *, python: str, workdir: str | Path,
                 dht_prefix: str = DEFAULT_DHT_PREFIX, ready_timeout_s: float = 120.0,
                 log=lambda msg: print(msg, file=sys.stderr, flush=True)):
        if not specs:
            raise SwarmError("a swarm needs at least one server")
        self.specs, self.model_dir, self.python = specs, model_dir, python
        self.workdir = Path(workdir)
        self.dht_prefix, self.ready_timeout_s, self.log = dht_prefix, ready_timeout_s, log
        self.servers: list[RunningServer] = []
        self.ready_at: float | None = None     # time.monotonic() when every server was up
        self._sockets_before = procs.p2p_sockets()
        self._lock = threading.Lock()
        self.proxy: subprocess.Popen | None = None
        self.extra_proxies: list[subprocess.Popen] = []     # relays of servers added while running
        self._ports: dict[str, tuple[int, int | None]] = {}

    def _start_proxy(self, specs: list[ServerSpec] | None = None) -> subprocess.Popen | None:
        """One relay process for every server with a delay: public port -> the server's private port."""
        relays = []
        for spec in self.specs if specs is None else specs:
            if spec.one_way_delay_ms is None:
                self._ports[spec.id] = (free_port(), None)
                continue
            private, public = free_port(), free_port()
            self._ports[spec.id] = (private, public)
            relays.append(f"{public}:{private}:{spec.one_way_delay_ms:g}")
        if not relays:
            return None
        repo_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ, PYTHONPATH=repo_root + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proxy = subprocess.Popen([sys.executable, "-m", "serving.petals.delay_proxy", *relays], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                 text=True, start_new_session=True)
        if specs is None:
            self.proxy = proxy
        else:
            self.extra_proxies.append(proxy)
        if proxy.stdout.readline().strip() != "ready":
            raise SwarmError(f"the delay proxy did not start (exit code {proxy.poll()})")
        self.log(f"swarm: delay relays {' '.join(relays)} (public:private:one-way ms)")
        return proxy

    # -- launch ---------------------------------------------------------------
    def _spawn(self, spec: ServerSpec, initial_peers: list[str]) -> RunningServer:
        port, public = self._ports.get(spec.id) or (free_port(), None)
        log_path = self.workdir / f"server-{spec.id}.log"
        args = server_args(spec, self.model_dir, port, self.workdir / f"identity-{spec.id}",
                           initial_peers, self.dht_prefix, announce_port=public)
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
                   MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore", **spec.env)
        repo_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = repo_root + os.pathsep + env.get("PYTHONPATH", "")
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen([self.python, "-m", "serving.petals.server_main", *args], env=env,
                                    stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        server = RunningServer(spec, port, proc, log_path, pids={proc.pid}, public_port=public)
        with self._lock:
            self.servers.append(server)
        return server

    def _wait_ready(self, server: RunningServer) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            text = server.log_text()
            if server.peer_id is None and (m := PEER_RE.search(text)):
                server.peer_id = m.group(1)
            server.pids |= set(procs.process_tree(server.proc.pid))
            if server.peer_id and "] Started" in text:
                return
            if server.proc.poll() is not None:
                tail = "\n".join(text.splitlines()[-15:])
                raise SwarmError(f"PETALS server {server.spec.id} exited with code {server.proc.returncode} "
                                 f"before it was ready; log {server.log_path}:\n{tail}")
            time.sleep(0.25)
        raise SwarmError(f"PETALS server {server.spec.id} not ready within {self.ready_timeout_s:.0f} s "
                         f"(log: {server.log_path})")

    def start(self) -> "Swarm":
        self.workdir.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        self._start_proxy()
        first = self._spawn(self.specs[0], [])
        self._wait_ready(first)
        others = [self._spawn(spec, [first.maddr]) for spec in self.specs[1:]]
        for server in others:
            self._wait_ready(server)
        for server in self.servers:   # the tree is complete once every server is up
            server.pids |= set(procs.process_tree(server.proc.pid))
        self.ready_at = time.monotonic()
        self.log(f"swarm: {len(self.servers)} PETALS servers ready in {self.ready_at - t0:.1f} s")
        return self

    @property
    def initial_peers(self) -> list[str]:
        return [self.servers[0].maddr]

    def peer_of(self) -> dict[str, str]:
        return {s.spec.id: s.peer_id for s in self.servers}

    def info(self, model_name: str) -> SwarmInfo:
        lengths = [s.max_length for s in self.specs]
        return SwarmInfo(str(self.model_dir), model_name, self.dht_prefix, tuple(self.initial_peers), self.peer_of(),
                         None if None in lengths else min(lengths))

    # -- churn (the testbed's --churn) ------------------------------------------
    def server(self, server_id: str) -> RunningServer:
        with self._lock:
            for s in self.servers:
                if s.spec.id == server_id:
                    return s
        raise SwarmError(f"no server {server_id!r} in this swarm (it has {[s.spec.id for s in self.servers]})")

    def signal_server(self, server_id: str, sig: int) -> int:
        """Send ``sig`` to every process of the server's tree (main process, DHT, handlers, its p2pd), as a
        machine that dies (SIGKILL) or freezes (SIGSTOP) takes all of them; returns how many got it."""
        import signal as _signal
        s = self.server(server_id)
        if s.proc.poll() is not None:
            return 0            # already dead: its recorded pids may belong to others by now
        s.pids |= procs.running_tree(s.proc)
        sent = 0
        for pid in sorted(s.pids):
            try:
                os.kill(pid, sig)
                sent += 1
            except (ProcessLookupError, PermissionError):
                pass
        if sig == _signal.SIGKILL:
            procs.reap(s.proc)
            time.sleep(0.2)
            s.pids = {p for p in s.pids if procs.alive(p)}     # never signal a reused pid later
        return sent

    def restart(self, server_id: str, spec: ServerSpec | None = None) -> RunningServer:
        """A fresh start of the server: what is left of the old process tree is killed, and a new one starts
        on the same ports (its relay still points there) and identity (so the same peer id), joining through
        a server that is running.  ``spec`` (the same id): its new flags, e.g. another block range (a
        re-plan's placement); None: its planned blocks as before."""
        import signal as _signal
        old = self.server(server_id)
        if spec is not None and spec.id != server_id:
            raise SwarmError(f"restart {server_id!r} with the spec of {spec.id!r}")
        if old.proc.poll() is None:
            self.signal_server(server_id, _signal.SIGCONT)
            self.signal_server(server_id, _signal.SIGKILL)
        spec = spec or old.spec
        with self._lock:
            self.servers.remove(old)
            self.specs = [spec if s.id == server_id else s for s in self.specs]
            joinable = [s for s in self.servers if s.proc.poll() is None and s.peer_id]
        fresh = self._spawn(spec, [joinable[0].maddr] if joinable else [])
        self._wait_ready(fresh)
        fresh.pids |= set(procs.process_tree(fresh.proc.pid))
        return fresh

    def add(self, spec: ServerSpec) -> RunningServer:
        """Start a server that is not in the swarm yet (a re-plan placed blocks on it), behind a relay of its
        own when it has a delay, joining through a server that is running."""
        with self._lock:
            if any(s.spec.id == spec.id for s in self.servers):
                raise SwarmError(f"server {spec.id!r} is already in this swarm")
            joinable = [s for s in self.servers if s.proc.poll() is None and s.peer_id]
        if spec.id not in self._ports:
            self._start_proxy([spec])
        with self._lock:
            self.specs = [s for s in self.specs if s.id != spec.id] + [spec]
        fresh = self._spawn(spec, [joinable[0].maddr] if joinable else [])
        self._wait_ready(fresh)
        fresh.pids |= set(procs.process_tree(fresh.proc.pid))
        return fresh

    # -- stop -----------------------------------------------------------------
    def stop(self) -> dict[str, int]:
        """SIGTERM every process of every server's tree; remove sockets and shared memory."""
        with self._lock:
            servers = list(self.servers)
        pids: set[int] = set()
        for s in servers:
            s.pids |= procs.running_tree(s.proc)
            pids |= s.pids
        killed = procs.terminate_tree(sorted(pids)) if pids else []
        for s in servers:
            procs.reap(s.proc)
        leftovers = procs.leftover_files(sorted(pids), self._sockets_before)
        procs.remove_files(leftovers)
        for proxy in [self.proxy, *self.extra_proxies]:
            if proxy is not None:
                procs.stop_process(proxy, timeout_s=5)
        self.proxy, self.extra_proxies = None, []
        with self._lock:
            self.servers.clear()
        return {"processes": len(pids), "killed_after_timeout": len(killed), "files_removed": len(leftovers)}
