"""``python -m gpu_probe watch``: heartbeats from beside a server, so the service knows it is alive (docs/liveness.md).

Every ``--interval`` seconds it POSTs ``{"state": "up"|"draining", "free_memory_gb", "total_memory_gb", "device",
"agent"}`` to ``/api/v1/clusters/{cluster}/servers/{server}/heartbeat/`` with the server's probe token.  It says
``draining`` while ``--drain-file`` exists or after SIGUSR1 (SIGUSR2 takes SIGUSR1's drain back), and stops
cleanly on SIGTERM or Ctrl-C.  A server whose heartbeats stop is taken for down after the dispatcher's heartbeat
timeout: drain it first for planned maintenance.

Standard library only (no torch, no Django): free memory comes from ``nvidia-smi`` when there is one, else the
host's available memory.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import AGENT_NAME, __version__
from .client import ProbeClientError, _describe

GB = 1e9
MIB = 1024 * 1024
# answers that will not fix themselves by trying again: a bad token, another server's token, a body refused
FATAL_STATUSES = (400, 401, 403)


@dataclass(frozen=True)
class Memory:
    free_gb: float
    total_gb: float
    device: str


def gpu_memory(index: int = 0, timeout: float = 5.0) -> Memory | None:
    """Free and total memory of GPU ``index`` from nvidia-smi; None without nvidia-smi or when it fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=memory.free,memory.total,name", "--format=csv,noheader,nounits",
                              "-i", str(index)], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    line = out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else ""
    parts = [p.strip() for p in line.split(",", 2)]
    if len(parts) != 3:
        return None
    try:
        free_mib, total_mib = float(parts[0]), float(parts[1])
    except ValueError:
        return None
    return Memory(free_mib * MIB / GB, total_mib * MIB / GB, parts[2])


def host_memory() -> Memory:
    """The host's available and total memory (/proc/meminfo), for a server without a GPU nvidia-smi can see."""
    info: dict[str, int] = {}
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                info[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    total = info.get("MemTotal", 0)
    free = info.get("MemAvailable", info.get("MemFree", 0))
    return Memory(free / GB, total / GB, "host memory (no GPU seen by nvidia-smi)")


def heartbeat_url(base: str, cluster: int, server: str) -> str:
    return (base.rstrip("/") + f"/api/v1/clusters/{cluster}/servers/"
            + urllib.parse.quote(server, safe="") + "/heartbeat/")


def post_heartbeat(url: str, token: str, body: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """POST one heartbeat; the service's answer ``{"server", "state", "since", "drain_requested"}``."""
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
        "Content-Type": "application/json", "Accept": "application/json", "Authorization": f"Probe {token}",
        "User-Agent": f"{AGENT_NAME}/{__version__} watch"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            answer: Any = json.loads(raw)
        except ValueError:
            answer = raw.decode(errors="replace")
        hint = {401: " (is the probe token right?)", 403: " (the token is for another server)",
                404: " (no such cluster or server)", 503: " (the dispatcher's store is unavailable)"}.get(exc.code, "")
        raise ProbeClientError(f"heartbeat refused: HTTP {exc.code}{hint}: {_describe(answer)}",
                               status=exc.code, body=answer) from None
    except urllib.error.URLError as exc:
        raise ProbeClientError(f"cannot reach {url}: {exc.reason}") from None
    except (OSError, ValueError) as exc:        # timeouts, a malformed URL
        raise ProbeClientError(f"cannot reach {url}: {exc}") from None
    try:
        return json.loads(raw)
    except ValueError:
        raise ProbeClientError(f"the service answered a heartbeat with non-JSON: {raw[:200]!r}") from None


class Watcher:
    """The heartbeat loop: one POST per interval until ``stop()`` (SIGTERM/SIGINT) or a fatal answer."""

    def __init__(self, *, url: str, token: str, interval: float, drain_file: Path | None = None,
                 device_index: int = 0, timeout: float = 5.0, count: int | None = None,
                 say: Callable[[str], None] = print, memory: Callable[[], Memory] | None = None):
        self.url, self.token, self.interval = url, token, interval
        self.drain_file, self.timeout, self.count, self.say = drain_file, timeout, count, say
        self.memory = memory or (lambda: gpu_memory(device_index, timeout) or host_memory())
        self.stopped = threading.Event()
        self.drain_signalled = False
        self.sent = 0
        self.accepted = 0
        self.last_state: str | None = None
        self.failing = False

    # signal handlers only set flags: the loop reads them
    def stop(self, *_: Any) -> None:
        self.stopped.set()

    def drain(self, *_: Any) -> None:
        self.drain_signalled = True

    def undrain(self, *_: Any) -> None:
        self.drain_signalled = False

    def wanted_state(self) -> str:
        if self.drain_signalled or (self.drain_file is not None and self.drain_file.exists()):
            return "draining"
        return "up"

    def beat(self) -> dict[str, Any] | None:
        """Send one heartbeat; the answer, or None after a transient failure (said once until it recovers)."""
        mem = self.memory()
        body = {"state": self.wanted_state(), "free_memory_gb": round(max(0.0, mem.free_gb), 3),
                "total_memory_gb": round(max(0.0, mem.total_gb), 3), "device": mem.device[:200],
                "agent": f"{AGENT_NAME} {__version__} watch"}
        try:
            answer = post_heartbeat(self.url, self.token, body, self.timeout)
        except ProbeClientError as exc:
            if exc.status in FATAL_STATUSES:
                raise
            if not self.failing:
                self.say(f"warning: {exc}" + ("" if self.count == 1 else f"; retrying every {self.interval:g} s"))
            self.failing = True
            return None
        if self.failing:
            self.say("heartbeats accepted again")
        self.failing = False
        self.accepted += 1
        state = answer.get("state")
        if state != self.last_state:
            extra = " (the owner's drain holds)" if answer.get("drain_requested") else ""
            self.say(f"sent {body['state']}; the service holds the server {state}{extra}")
            self.last_state = state
        return answer

    def run(self) -> int:
        while not self.stopped.is_set():
            started = time.monotonic()
            self.beat()
            self.sent += 1
            if self.count is not None and self.sent >= self.count:
                break
            self.stopped.wait(max(0.0, self.interval - (time.monotonic() - started)))
        return 0


def run_watch(args, say: Callable[[str], None]) -> int:
    """``python -m gpu_probe watch`` (arguments checked by cli.build_parser)."""
    from .cli import EXIT_UPLOAD
    watcher = Watcher(url=heartbeat_url(args.url, args.cluster, args.server), token=args.token,
                      interval=args.interval, drain_file=args.drain_file, device_index=args.device_index,
                      timeout=args.timeout, count=1 if args.once else None, say=say)
    previous = {sig: signal.signal(sig, handler) for sig, handler in (
        (signal.SIGTERM, watcher.stop), (signal.SIGINT, watcher.stop),
        (signal.SIGUSR1, watcher.drain), (signal.SIGUSR2, watcher.undrain))}
    say(f"heartbeats for server {args.server!r} of cluster {args.cluster} to {args.url} every {args.interval:g} s"
        + (f"; draining while {args.drain_file} exists" if args.drain_file else "")
        + " (SIGUSR1: drain, SIGUSR2: undo it, SIGTERM: stop)")
    try:
        code = watcher.run()
    except ProbeClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UPLOAD
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if args.once and not watcher.accepted:
        print("error: the heartbeat did not reach the service (see the warning above)", file=sys.stderr)
        return EXIT_UPLOAD
    say(f"stopped after {watcher.sent} heartbeat(s), {watcher.accepted} accepted")
    return code
