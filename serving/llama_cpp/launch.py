"""Start a plan's llama.cpp chains exactly as its export says, and keep them running (standard library only).

    python -m solvers export PLAN.json --scenario SCENARIO.json --runtime llama.cpp --model-path MODEL.gguf \\
        --local-device CPU --engines-file engines.json --json > export.json
    python -m serving.llama_cpp.launch --export export.json [--bind server] [--only SERVER ...]
                                       [--bin-dir DIR] [--workdir DIR] [--ready-file FILE]

For every engine of the export (one per chain): its ``rpc-server`` processes (the export's
``rpc_servers``), then, once they accept connections, its ``llama-server`` with the export's arguments
as they are (``--rpc``, ``--device``, ``-ngl``, ``-sm layer``, ``-ts``, ``-np``, ``-c``, ``-ctk/-ctv``,
``--port``).  Only the program paths change (the binaries of ``bash scripts/llama_cpp.sh``; its RPC server
is called ``ggml-rpc-server``), and with ``--bind server`` the ``--host 0.0.0.0`` of each process
becomes the address of the server it stands for: name a plan's servers by loopback addresses
(127.0.0.2, 127.0.0.3, ...) and one machine holds the whole plan, every process on its server's
address and the export's ports.  ``--only SERVER`` starts just what runs on that server (one host of a
real cluster).

Once every llama-server answers ``/health`` it prints ``chain K ready: URL`` per chain and
``chains ready: N`` (and writes ``--ready-file``: each chain's URL, pids and logs); on SIGTERM or SIGINT
it stops every process it started; if one exits by itself it stops the others and exits 1.  Logs go to
``--workdir`` (``chainK-rpc-SERVER.log``, ``chainK-llama-server.log``).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serving.llama_cpp import llama_cpp_home
from serving.petals.procs import StartStop, stop_process

RPC_NAMES = ("rpc-server", "ggml-rpc-server")   # what llama.cpp's RPC server is called (older, newer builds)


class LaunchError(Exception):
    """A clear, one-line reason the chains could not be started."""


@dataclass
class Process:
    chain: int
    role: str                       # "rpc-server" | "llama-server"
    server: str                     # the plan server it stands for
    argv: list[str]
    host: str                       # where it listens (what readiness checks)
    port: int
    log: Path
    here: bool = True               # started by this launcher (else on its own host: only waited for)
    popen: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"chain {self.chain} {self.role} on {self.server}"


def binaries(bin_dir: Path) -> dict[str, Path]:
    """``{"llama-server": path, "rpc-server": path}`` from ``bin_dir`` (built by ``bash scripts/llama_cpp.sh``)."""
    server = bin_dir / "llama-server"
    rpc = next((bin_dir / n for n in RPC_NAMES if (bin_dir / n).is_file()), None)
    if not server.is_file() or rpc is None:
        raise LaunchError(f"llama.cpp binaries missing in {bin_dir} (need llama-server and rpc-server or "
                          "ggml-rpc-server): run bash scripts/llama_cpp.sh")
    return {"llama-server": server, "rpc-server": rpc}


def _flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args and args.index(name) + 1 < len(args) else None


def _bind(args: list[str], host: str) -> list[str]:
    """``args`` with the value of ``--host`` replaced by ``host``."""
    out = list(args)
    if "--host" not in out:
        raise LaunchError(f"the exported command has no --host to bind: {' '.join(args)}")
    out[out.index("--host") + 1] = host
    return out


def plan_processes(export: Any, *, bins: dict[str, Path], workdir: Path, bind: str = "exported",
                   only: set[str] | None = None) -> list[Process]:
    """Every process of the export's chains (rpc-servers first within a chain), as it will be started."""
    if not isinstance(export, dict) or export.get("runtime") != "llama.cpp":
        got = export.get("runtime") if isinstance(export, dict) else type(export).__name__
        raise LaunchError(f"export: expected `python -m solvers export --runtime llama.cpp --json` output, got "
                          f"runtime {got!r}")
    engines = export.get("engines")
    if not isinstance(engines, list) or not engines:
        raise LaunchError("export: no engines (chains) to launch")
    procs: list[Process] = []
    for i, eng in enumerate(engines):
        where = f"export: engines[{i}]"
        args, servers = eng.get("args"), eng.get("servers")
        if not isinstance(args, list) or not args or args[0] != "llama-server" or not isinstance(servers, list):
            raise LaunchError(f"{where}: not a llama.cpp engine row (args starting with llama-server, servers)")
        if "rpc_servers" not in eng:
            raise LaunchError(f"{where}: no rpc_servers; export the plan again with this chainplan")
        chain = int(eng.get("chain", i))
        for r in eng["rpc_servers"]:
            rargs = list(r["args"])
            host = r["server"] if bind == "server" else (_flag(rargs, "--host") or "127.0.0.1")
            if bind == "server":
                rargs = _bind(rargs, r["server"])
            procs.append(Process(chain, "rpc-server", r["server"], [str(bins["rpc-server"]), *rargs[1:]],
                                 host, int(r["port"]), workdir / f"chain{chain}-rpc-{r['server']}.log"))
        head = servers[-1]
        host = head if bind == "server" else (_flag(args, "--host") or "127.0.0.1")
        largs = _bind(args, head) if bind == "server" else list(args)
        port = _flag(largs, "--port")
        procs.append(Process(chain, "llama-server", head, [str(bins["llama-server"]), *largs[1:]], host,
                             int(port) if port else 8080, workdir / f"chain{chain}-llama-server.log"))
    if only:
        unknown = only - {p.server for p in procs}
        if unknown:
            raise LaunchError(f"--only: {', '.join(sorted(unknown))} runs nothing in this export "
                              f"(its servers: {', '.join(sorted({p.server for p in procs}))})")
        for p in procs:
            p.here = p.server in only
    mine = [p for p in procs if p.here]
    for k, p in enumerate(mine):        # two listeners clash on one port of one address, or of all (0.0.0.0)
        clash = next((q for q in mine[:k] if q.port == p.port and (q.host == p.host or "0.0.0.0" in (q.host, p.host))),
                     None)
        if clash:
            raise LaunchError(f"{p.name} and {clash.name} would both listen on port {p.port} of this machine: start "
                              "one server per host (--only SERVER), or name the servers by loopback addresses and "
                              "use --bind server")
    return procs


def _connects(host: str, port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1" if host == "0.0.0.0" else host, port), timeout=1):
            return True
    except OSError:
        return False


def _healthy(host: str, port: int) -> bool:
    url = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}/health"
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


class Chains(StartStop):
    """The processes of ``plan_processes``, started in order and stopped together (``with Chains(...)``)."""

    def __init__(self, procs: list[Process], *, ready_timeout_s: float = 120.0, env: dict[str, str] | None = None):
        self.procs = procs
        self.ready_timeout_s = ready_timeout_s
        self.env = env

    def _wait(self, p: Process) -> None:
        check = _connects if p.role == "rpc-server" else _healthy
        deadline = time.monotonic() + self.ready_timeout_s
        while time.monotonic() < deadline:
            if p.popen is not None and p.popen.poll() is not None:
                raise LaunchError(f"{p.name} exited with {p.popen.returncode}: {_tail(p.log)}")
            if check(p.host, p.port):
                return
            time.sleep(0.1)
        raise LaunchError(f"{p.name} did not answer on {p.host}:{p.port} within {self.ready_timeout_s:g} s")

    def start(self) -> "Chains":
        for p in self.procs:
            if not p.here:
                continue
            if p.role == "llama-server":
                # its rpc-servers first, whether started here or on their own hosts
                for r in self.procs:
                    if r.chain == p.chain and r.role == "rpc-server":
                        self._wait(r)
            p.log.parent.mkdir(parents=True, exist_ok=True)
            with open(p.log, "wb") as log:
                p.popen = subprocess.Popen(p.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           env=self.env)
        for p in self.procs:
            if p.here:
                self._wait(p)
        return self

    def exited(self) -> Process | None:
        return next((p for p in self.procs if p.popen is not None and p.popen.poll() is not None), None)

    def stop(self) -> None:
        # the head first: an rpc-server serves one client, and llama-server's exit frees it
        for p in sorted(self.procs, key=lambda p: p.role != "llama-server"):
            if p.popen is not None:
                stop_process(p.popen, timeout_s=10)

    def ready_doc(self) -> dict[str, Any]:
        chains: dict[int, dict[str, Any]] = {}
        for p in self.procs:
            if not p.here:
                continue
            c = chains.setdefault(p.chain, {"chain": p.chain, "processes": []})
            c["processes"].append({"role": p.role, "server": p.server, "pid": p.popen.pid if p.popen else None,
                                   "listen": f"{p.host}:{p.port}", "log": str(p.log)})
            if p.role == "llama-server":
                c["url"] = f"http://{p.host}:{p.port}/v1"
        return {"chains": list(chains.values())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--export", required=True, help="`python -m solvers export --runtime llama.cpp --json` output")
    p.add_argument("--bind", choices=("exported", "server"), default="exported",
                   help="exported: listen where the export says (--host 0.0.0.0); server: on each server's own "
                        "address (servers named by loopback addresses: the whole plan on one machine)")
    p.add_argument("--only", action="append", metavar="SERVER", help="start only what runs on SERVER (repeatable)")
    p.add_argument("--bin-dir", default=None, help="the llama.cpp binaries (default: scripts/llama_cpp.sh's)")
    p.add_argument("--workdir", default="var/llama-cpp", help="where the logs go (default var/llama-cpp)")
    p.add_argument("--ready-file", default=None, help="write each chain's URL, pids and logs here once ready")
    p.add_argument("--ready-timeout-s", type=float, default=120.0)
    a = p.parse_args(argv)
    try:
        try:
            export = json.loads(Path(a.export).read_text())
        except OSError as exc:
            raise LaunchError(f"export {a.export}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise LaunchError(f"export {a.export}: not JSON ({exc}); pass `python -m solvers export ... --json`") \
                from None
        bins = binaries(Path(a.bin_dir) if a.bin_dir else llama_cpp_home() / "bin")
        procs = plan_processes(export, bins=bins, workdir=Path(a.workdir), bind=a.bind,
                               only=set(a.only) if a.only else None)
    except LaunchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    chains = Chains(procs, ready_timeout_s=a.ready_timeout_s)
    try:
        chains.start()
    except LaunchError as exc:
        chains.stop()
        print(f"error: {exc}", file=sys.stderr)
        return 1
    doc = chains.ready_doc()
    if a.ready_file:
        Path(a.ready_file).write_text(json.dumps(doc, indent=2) + "\n")
    for c in doc["chains"]:
        if "url" in c:
            print(f"chain {c['chain']} ready: {c['url']}", flush=True)
    print(f"chains ready: {len(doc['chains'])}", flush=True)
    status = 0
    while not stop.wait(0.5):
        gone = chains.exited()
        if gone is not None:
            print(f"error: {gone.name} exited with {gone.popen.returncode}: {_tail(gone.log)}", file=sys.stderr)
            status = 1
            break
    chains.stop()
    if a.ready_file:
        Path(a.ready_file).unlink(missing_ok=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
