"""The PETALS client process (serving.petals.client, in .venv-petals) and its JSON-lines protocol,
with the client settings that decide how PETALS' own routing meets a full server."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time

from serving.petals import procs
from testbed import REPO

# The PETALS client's settings that decide how PETALS' own routing meets a full server; the client
# process gets them and the simulator's model of that client (PetalsClientPolicy) uses the same.
CLIENT_MAX_RETRIES = 6          # attempts per hop before a request fails (PETALS' default: retry forever)
SERVER_ANNOUNCE_S = 120.0       # PETALS servers' --update_period (run_server's default): how stale the announced cache is
CLIENT_BAN_S = 15.0             # PETALS client's ban_timeout (default)
CLIENT_UPDATE_S = 5.0           # the client's update_period (PETALS' default 60): how often it re-reads the swarm
PETALS_BLOCK_COST_S = 1 / 300   # routing cost per block: servers given a fixed --throughput announce no
                                # inference_rps, and PETALS' client then assumes 300 steps/s


class Worker:
    """The PETALS client process (serving.petals.client) and its JSON-lines protocol."""

    def __init__(self, python: str, model_dir: str, initial_peers: list[str], dht_prefix: str):
        env = dict(os.environ, PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
        self.proc = subprocess.Popen([python, "-m", "serving.petals.client", model_dir, "--initial-peers",
                                      *initial_peers, "--dht-prefix", dht_prefix,
                                      "--max-retries", str(CLIENT_MAX_RETRIES),
                                      "--update-period", str(CLIENT_UPDATE_S)], cwd=REPO, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True, start_new_session=True)
        self.pids = {self.proc.pid}
        self._waiters: dict[object, tuple[threading.Event, list]] = {}
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._control: list[dict] = []
        self._control_ev = threading.Event()
        self._reader.start()
        self._wait_control("ready", 120)

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "op" in msg:
                self._control.append(msg)
                self._control_ev.set()
                continue
            with self._lock:
                ev, box = self._waiters.pop(msg["id"], (None, None))
            if ev is not None:
                box.append(msg)
                ev.set()

    def _wait_control(self, op: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in list(self._control):
                if m["op"] == op:
                    self._control.remove(m)
                    if not m.get("ok", True):
                        raise RuntimeError(f"PETALS client: {op} failed: {m.get('error')}")
                    return m
            if self.proc.poll() is not None:
                raise RuntimeError(f"PETALS client exited with code {self.proc.returncode}")
            self._control_ev.wait(0.2)
            self._control_ev.clear()
        raise RuntimeError(f"PETALS client: no '{op}' answer within {timeout:.0f} s")

    def send(self, msg: dict) -> None:
        with self._lock:
            self.proc.stdin.write(json.dumps(msg) + "\n")
            self.proc.stdin.flush()

    def control(self, msg: dict, timeout: float = 90) -> dict:
        self.pids |= set(procs.process_tree(self.proc.pid))
        self.send(msg)
        return self._wait_control(msg["op"], timeout)

    def run(self, rid, chain, input_tokens: int, output_tokens: int, timeout: float = 300, op: str = "run", *,
            resume_tokens: list[int] | None = None, step_timeout_s: float | None = None,
            max_retries: int | None = None, routing_feedback: bool | None = None) -> dict:
        """``op``: "run" generates through the whole model on ``chain`` (None: PETALS routes); "probe"
        runs one session over exactly the chain's blocks (a sub-range allowed) on random hidden states.
        ``resume_tokens`` (a fail-over): the tokens already produced, prefilled after the same prompt;
        ``step_timeout_s`` / ``max_retries``: a forced chain's step deadline and attempts per hop;
        ``routing_feedback`` False: a failed hop is not banned by the client (the dispatcher masks it).  A failed
        run answers ``peer`` (the server that failed, where known) and ``tokens`` (produced so far)."""
        ev, box = threading.Event(), []
        with self._lock:
            self._waiters[rid] = (ev, box)
        msg = {"op": op, "id": rid, "chain": chain, "input_tokens": input_tokens,
               "output_tokens": output_tokens, "seed": hash(rid) % 1000}
        for key, value in (("resume_tokens", resume_tokens), ("step_timeout_s", step_timeout_s),
                           ("max_retries", max_retries), ("routing_feedback", routing_feedback)):
            if value is not None:
                msg[key] = value
        self.send(msg)
        if not ev.wait(timeout):
            return {"id": rid, "ok": False, "error": f"no answer within {timeout:.0f} s"}
        return box[0]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.pids |= set(procs.process_tree(self.proc.pid))
            try:
                self.send({"op": "quit"})
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                pass
        procs.terminate_tree(sorted(self.pids), timeout_s=5)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
