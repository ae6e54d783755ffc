"""Launch a plan's PETALS swarm on loopback and stop it cleanly (standard library only).

One PETALS server per server the plan uses, pinned to the planned block range, with a
KV budget (``--attn_cache_tokens``) of the plan's cache slots times the longest request,
a fixed throughput (so PETALS' own routing does not re-measure and re-balance), and only
loopback addresses.  The first server starts a new private swarm; the others join it.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

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


@dataclass
class RunningServer:
    spec: ServerSpec
    port: int
    proc: subprocess.Popen
    log_path: Path
    peer_id: str | None = None
    pids: set[int] = field(default_factory=set)

    @property
    def maddr(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.port}/p2p/{self.peer_id}"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_args(spec: ServerSpec, model_dir: str, port: int, identity: Path, initial_peers: list[str],
                dht_prefix: str, throughput: float = 1.0) -> list[str]:
    args = [str(model_dir), "--block_indices", f"{spec.start_block}:{spec.end_block}",
            "--dht_prefix", dht_prefix, "--host_maddrs", f"/ip4/127.0.0.1/tcp/{port}",
            "--identity_path", str(identity), "--throughput", str(throughput),
            "--no_auto_relay", "--skip_reachability_check",
            "--device", spec.device, "--torch_dtype", "float32", "--quant_type", "none",
            "--num_handlers", "1", "--attn_cache_tokens", str(spec.cache_tokens),
            "--inference_max_length", str(max(spec.cache_tokens, 1))]
    args += ["--initial_peers", *initial_peers] if initial_peers else ["--new_swarm"]
    return args + list(spec.extra_args)


class Swarm:
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
        self._sockets_before = procs.p2p_sockets()
        self._lock = threading.Lock()

    # -- launch ---------------------------------------------------------------
    def _spawn(self, spec: ServerSpec, initial_peers: list[str]) -> RunningServer:
        port = free_port()
        log_path = self.workdir / f"server-{spec.id}.log"
        args = server_args(spec, self.model_dir, port, self.workdir / f"identity-{spec.id}",
                           initial_peers, self.dht_prefix)
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
                   MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore", **spec.env)
        repo_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = repo_root + os.pathsep + env.get("PYTHONPATH", "")
        with open(log_path, "wb") as log_file:
            proc = subprocess.Popen([self.python, "-m", "serving.petals.server_main", *args], env=env,
                                    stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        server = RunningServer(spec, port, proc, log_path, pids={proc.pid})
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
        first = self._spawn(self.specs[0], [])
        self._wait_ready(first)
        others = [self._spawn(spec, [first.maddr]) for spec in self.specs[1:]]
        for server in others:
            self._wait_ready(server)
        for server in self.servers:   # the tree is complete once every server is up
            server.pids |= set(procs.process_tree(server.proc.pid))
        self.log(f"swarm: {len(self.servers)} PETALS servers ready in {time.monotonic() - t0:.1f} s")
        return self

    @property
    def initial_peers(self) -> list[str]:
        return [self.servers[0].maddr]

    def peer_of(self) -> dict[str, str]:
        return {s.spec.id: s.peer_id for s in self.servers}

    # -- stop -----------------------------------------------------------------
    def stop(self) -> dict[str, int]:
        """SIGTERM every process of every server's tree; remove sockets and shared memory."""
        with self._lock:
            servers = list(self.servers)
        pids: set[int] = set()
        for s in servers:
            s.pids |= set(procs.process_tree(s.proc.pid)) if s.proc.poll() is None else set()
            pids |= s.pids
        killed = procs.terminate_tree(sorted(pids)) if pids else []
        for s in servers:
            try:
                s.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        leftovers = procs.leftover_files(sorted(pids), self._sockets_before)
        procs.remove_files(leftovers)
        with self._lock:
            self.servers.clear()
        return {"processes": len(pids), "killed_after_timeout": len(killed), "files_removed": len(leftovers)}

    def __enter__(self) -> "Swarm":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
