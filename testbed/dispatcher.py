"""The live dispatcher (serving.dispatch, its own uvicorn process on Redis) for a testbed run.

Started on a free loopback port with a key prefix of its own in Redis (never another
stream's keys, never a flush); the plan and a dispatch token are put there with the
dispatcher's own CLI, exactly as an operator without the planner would.  Stopping ends the
process tree and deletes only this run's keys.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time

from serving.petals import procs
from serving.petals.swarm import free_port
from testbed import REPO

CLUSTER = 1


class DispatcherError(RuntimeError):
    pass


class LiveDispatcher(procs.StartStop):
    def __init__(self, redis_url: str = "redis://127.0.0.1:6379/0", python: str = sys.executable,
                 env: dict[str, str] | None = None):
        self.redis_url, self.python = redis_url, python
        self.env = dict(os.environ, **(env or {}))    # e.g. the liveness constants (testbed.churn)
        self.prefix = f"chainplan:testbed:{os.getpid()}:{secrets.token_hex(4)}"
        self.port = free_port()
        self.token = secrets.token_urlsafe(24)
        self.proc: subprocess.Popen | None = None
        self.pids: set[int] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _cli(self, *args: str, stdin: str | None = None) -> str:
        r = subprocess.run([self.python, "-m", "serving.dispatch", "--redis", self.redis_url, "--prefix",
                            self.prefix, *args], input=stdin, capture_output=True, text=True, cwd=REPO,
                           timeout=60)
        if r.returncode != 0:
            raise DispatcherError(f"serving.dispatch {args[0]} failed: {(r.stderr or r.stdout).strip()[-500:]}")
        return r.stdout

    def start(self) -> "LiveDispatcher":
        try:
            import redis
            redis.Redis.from_url(self.redis_url, socket_connect_timeout=3).ping()
        except Exception as exc:
            raise DispatcherError(f"the dispatcher needs Redis at {self.redis_url}: {exc}") from None
        self.proc = subprocess.Popen([self.python, "-m", "serving.dispatch", "--redis", self.redis_url,
                                      "--prefix", self.prefix, "serve", "--port", str(self.port)], cwd=REPO,
                                     env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        self.pids = {self.proc.pid}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DispatcherError(f"dispatcher exited: {self.proc.stderr.read()[-500:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            time.sleep(0.2)
        else:
            raise DispatcherError("dispatcher did not open its port within 30 s")
        self.pids |= set(procs.process_tree(self.proc.pid))
        self._cli("token", "--", str(CLUSTER), self.token)    # a URL-safe token may begin with '-'
        return self

    def load_plan(self, plan_doc: dict, plan_id: int) -> None:
        self._cli("plan", str(CLUSTER), "-", "--plan-id", str(plan_id), "--ttl", "60", stdin=json.dumps(plan_doc))

    def stop(self) -> None:
        if self.proc is not None:
            self.pids |= procs.running_tree(self.proc)
            procs.terminate_tree(sorted(self.pids), timeout_s=10)
            procs.reap(self.proc)
            self.proc = None
        try:
            import redis
            r = redis.Redis.from_url(self.redis_url, socket_connect_timeout=3)
            keys = list(r.scan_iter(match=self.prefix + "*", count=500))
            if keys:
                r.delete(*keys)
        except Exception:
            pass
