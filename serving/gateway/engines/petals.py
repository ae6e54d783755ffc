"""The ``petals`` engine: a request runs with PETALS' own client over exactly the granted chain.

PETALS' pins differ from ours, so its client runs in its own environment (``.venv-petals``) as one
long-lived child process (``python -m serving.petals.client``, JSON lines on stdin/stdout, as the
testbed's worker); every request is a ``generate`` message carrying the lease's spans as
``[peer_id, start, end]`` (the swarm file's ``peers`` turn the plan's server ids into peer ids).
The child tokenizes with the model directory's tokenizer and chat template, keeps one KV session
over the spans, samples, and streams text deltas back; this side only routes them to the request.

Cancellation: when the task iterating ``stream()`` is cancelled (or the generator closed), the child
gets ``cancel``; it stops after the step in flight and closes the session, and we wait for its
acknowledgement for at most ``CANCEL_WAIT_S``.

Fail-over: the child reports the server whose step or session opening failed (a connection error, or
no answer within the step deadline ``max(2 s, 10 x expected step time)``), which becomes a ``HopError``
naming that plan server; a resumed request carries the answer's token ids, so the new chain continues
from exactly those tokens.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, AsyncIterator, Mapping, Sequence

from serving.gateway.engine import (STEP_FACTOR, STEP_FLOOR_S, Delta, EngineError, GenerationRequest, HopError,
                                    RequestTooLong, Resume)
from serving.petals import procs
from serving.petals.swarm import SwarmError, SwarmInfo
from solvers.plan_format import HopDoc

REPO = Path(__file__).resolve().parents[3]
DEFAULT_PETALS_PYTHON = REPO / ".venv-petals" / "bin" / "python"
CANCEL_WAIT_S = 1.0
# Attempts per hop before a request fails: the lease names one chain, so retrying a dead server
# only delays the error (PETALS' default retries forever).
MAX_RETRIES = 2
EXPECTED_STEP_S = 0.1      # a step's expected time when the model entry names none: a 2 s step deadline
_LINE_LIMIT = 1 << 22

__all__ = ["PetalsEngine", "RequestTooLong", "from_spec"]


class PetalsEngine:
    """``async with PetalsEngine(SwarmInfo.load(path)) as engine: async for d in engine.stream(req, hops)``."""

    name = "petals"

    def __init__(self, swarm: SwarmInfo, *, python: str | os.PathLike | None = None,
                 max_retries: int = MAX_RETRIES, start_timeout_s: float = 120.0, update_period_s: float = 2.0,
                 expected_step_s: float = EXPECTED_STEP_S, swarm_file: str | os.PathLike | None = None):
        self.swarm = swarm
        # where the swarm came from: read again when a lease names a server it does not list (servers started
        # for a re-plan, written there by whoever started them)
        self.swarm_file = Path(swarm_file) if swarm_file is not None else None
        self._swarm_stamp = self._stamp()
        self.expected_step_s = expected_step_s
        self.python = str(python or DEFAULT_PETALS_PYTHON)
        self.max_retries, self.start_timeout_s, self.update_period_s = max_retries, start_timeout_s, update_period_s
        self._server_of = {peer: server for server, peer in swarm.peers.items()}
        self._proc: asyncio.subprocess.Process | None = None
        self._pids: set[int] = set()
        self._reader: asyncio.Task | None = None
        self._streams: dict[str, asyncio.Queue] = {}
        self._control: dict[str, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._start_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()

    # -- life cycle -------------------------------------------------------------
    async def start(self) -> "PetalsEngine":
        """Start the PETALS client and wait until it sees every server of the swarm."""
        async with self._start_lock:
            if self._proc is not None and self._proc.returncode is None:
                return self
            if not Path(self.python).exists():
                raise EngineError(f"PETALS environment missing ({self.python}): run bash scripts/install_petals.sh")
            env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1",
                       PYTHONWARNINGS="ignore", PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
            self._proc = await asyncio.create_subprocess_exec(
                self.python, "-m", "serving.petals.client", self.swarm.model_dir,
                "--initial-peers", *self.swarm.initial_peers, "--dht-prefix", self.swarm.dht_prefix,
                "--max-retries", str(self.max_retries), "--update-period", str(self.update_period_s),
                cwd=str(REPO), env=env, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL, limit=_LINE_LIMIT, start_new_session=True)
            self._pids = {self._proc.pid}
            self._reader = asyncio.create_task(self._read(self._proc), name="petals-engine-reader")
            try:
                await self._call({"op": "ready"}, send=False, timeout=self.start_timeout_s)
                self._pids |= set(procs.process_tree(self._proc.pid))
                await self._call({"op": "peers", "peers": sorted(set(self.swarm.peers.values()))},
                                 timeout=self.start_timeout_s)
            except BaseException:
                await self.aclose()
                raise
            return self

    async def aclose(self) -> None:
        """Stop the PETALS client (its open sessions are cancelled and closed first)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            self._pids |= set(procs.process_tree(proc.pid))
            try:
                proc.stdin.write(b'{"op": "quit"}\n')
                await proc.stdin.drain()
                await asyncio.wait_for(proc.wait(), 10)
            except (OSError, asyncio.TimeoutError, ConnectionError):
                pass
        await asyncio.to_thread(procs.terminate_tree, sorted(self._pids), 5.0)
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)

    async def __aenter__(self) -> "PetalsEngine":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    # -- one request ----------------------------------------------------------------
    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.swarm_file.stat() if self.swarm_file is not None else None
        except OSError:
            return None
        return None if st is None else (st.st_mtime_ns, st.st_size)

    def _reload(self) -> bool:
        """The swarm file again, if it changed since it was read; False when it did not or cannot be read (the
        swarm known so far stays)."""
        stamp = self._stamp()
        if stamp is None or stamp == self._swarm_stamp:
            return False
        try:
            swarm = SwarmInfo.load(self.swarm_file)
        except SwarmError:
            return False          # being written, or broken: the next unknown server tries again
        self._swarm_stamp = stamp
        self.swarm = replace(self.swarm, peers=swarm.peers, max_length=swarm.max_length)
        self._server_of = {peer: server for server, peer in swarm.peers.items()}
        return True

    def chain(self, hops: Sequence[HopDoc]) -> list[list[Any]]:
        """The lease's hops as the client's forced route: [[peer_id, start, end], ...]."""
        chain = []
        for hop in hops:
            peer = self.swarm.peers.get(hop.server)
            if peer is None and self._reload():
                peer = self.swarm.peers.get(hop.server)
            if peer is None:
                raise EngineError(f"server {hop.server!r} of the granted chain is not in this PETALS swarm",
                                  server=hop.server)
            chain.append([peer, hop.start_block, hop.end_block])
        return chain

    async def stream(self, request: GenerationRequest, hops: Sequence[HopDoc]) -> AsyncIterator[Delta]:
        chain = self.chain(hops)
        await self.start()
        rid = f"g{next(self._ids)}"
        queue: asyncio.Queue = asyncio.Queue()
        self._streams[rid] = queue
        ended = False
        try:
            await self._send({"op": "generate", "id": rid, "chain": chain, "max_length": self.swarm.max_length,
                              "deadline": {"floor_s": STEP_FLOOR_S, "factor": STEP_FACTOR,
                                           "expected_step_s": self.expected_step_s},
                              **_request_fields(request)})
            while True:
                msg = await queue.get()
                if msg is None:
                    ended = True
                    raise EngineError(f"the PETALS client exited (code {self._exit_code()})")
                if msg.get("event") == "delta":
                    yield Delta(text=msg["text"], tokens=tuple(msg.get("tokens", ())))
                    continue
                ended = True
                if msg.get("too_long"):     # the prompt plus max_tokens exceed SwarmInfo.max_length
                    raise RequestTooLong(msg.get("error", "the request is too long"),
                                         param="prompt" if msg.get("param") == "prompt" else "max_tokens")
                if not msg.get("ok"):
                    server = self._server_of.get(msg.get("peer") or "")
                    if server is None:
                        raise EngineError(f"PETALS: {msg.get('error')}")
                    what = "gave no answer in time" if msg.get("timeout") else "failed"
                    raise HopError(f"PETALS: server {server} {what}: {msg.get('error')}", server=server)
                yield Delta(finish_reason=msg["finish_reason"], prompt_tokens=msg["prompt_tokens"],
                            completion_tokens=msg["completion_tokens"])
                return
        finally:
            if not ended:    # cancelled or closed early: the child closes the session; wait for it, briefly
                try:
                    await asyncio.wait_for(self._cancel(rid, queue), CANCEL_WAIT_S)
                except (asyncio.TimeoutError, OSError, ConnectionError):
                    pass
            self._streams.pop(rid, None)

    def resume_refusal(self, request: GenerationRequest, resume: Resume) -> str | None:
        if resume.text and not resume.tokens:
            return "the PETALS client reported no token ids for the answer so far"
        return None

    async def _cancel(self, rid: str, queue: asyncio.Queue) -> None:
        await self._send({"op": "cancel", "id": rid})
        while True:
            msg = await queue.get()
            if msg is None or msg.get("event") == "end":
                return

    # -- the child's protocol ----------------------------------------------------------
    def _exit_code(self) -> int | None:
        return None if self._proc is None else self._proc.returncode

    async def _send(self, msg: dict) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            raise EngineError(f"the PETALS client is not running (exit code {self._exit_code()})")
        async with self._write_lock:
            proc.stdin.write(json.dumps(msg).encode() + b"\n")
            await proc.stdin.drain()

    async def _call(self, msg: dict, *, timeout: float, send: bool = True) -> dict:
        fut = asyncio.get_running_loop().create_future()
        self._control[msg["op"]] = fut
        if send:
            await self._send(msg)
        try:
            reply = await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise EngineError(f"the PETALS client gave no '{msg['op']}' answer within {timeout:.0f} s") from None
        if not reply.get("ok", True):
            raise EngineError(f"the PETALS client: {msg['op']}: {reply.get('error')}")
        return reply

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        try:
            async for line in proc.stdout:
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue        # not ours (a library printing to stdout)
                if "op" in msg:
                    fut = self._control.pop(msg["op"], None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                elif (queue := self._streams.get(msg.get("id"))) is not None:
                    queue.put_nowait(msg)
        finally:
            # the child is gone: every waiting request and control call learns it now
            for queue in self._streams.values():
                queue.put_nowait(None)
            for op, fut in self._control.items():
                if not fut.done():
                    fut.set_exception(EngineError(f"the PETALS client exited before its '{op}' answer"))
            self._control.clear()


def _request_fields(request: GenerationRequest) -> dict[str, Any]:
    fields = {"kind": request.kind, "messages": [{"role": m.role, "content": m.content} for m in request.messages],
              "prompt": request.prompt, "max_tokens": request.max_tokens, "temperature": request.temperature,
              "top_p": request.top_p, "stop": list(request.stop), "seed": request.seed}
    if request.resume is not None:
        fields.update(resume_ids=list(request.resume.tokens), resume_text=request.resume.text)
    return fields


def _path(spec: Mapping[str, Any], field: str, base_dir: Path | None, *, required: bool) -> Path | None:
    value = spec.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field}: a path is required for a 'petals' engine, got {value!r}")
    p = Path(value).expanduser()
    return p if p.is_absolute() or base_dir is None else base_dir / p


def from_spec(spec: Mapping[str, Any], *, base_dir: Path | None = None) -> PetalsEngine:
    """A model entry of the gateway's configuration:

        {"engine": "petals", "swarm_file": "swarm.json", "python": ".venv-petals/bin/python", "expected_step_s": 0.1}

    ``swarm_file`` is what ``python -m serving.petals.launch`` (or ``scripts/swarm.sh``) wrote once the
    swarm was up; ``python`` (optional) the PETALS environment's interpreter, default ``.venv-petals``
    of this checkout; ``expected_step_s`` (optional) a token step's expected time on the plan's chains: a hop
    silent for ``max(2 s, 10 x`` that ``)`` is taken for hung.  The gateway itself stays in its own environment:
    only the client child runs there.
    """
    unknown = sorted(set(spec) - {"name", "cluster", "engine", "swarm_file", "python", "expected_step_s"})
    if unknown:
        raise ValueError(f"{unknown[0]}: not a field of a 'petals' engine (it takes swarm_file, python and "
                         f"expected_step_s)")
    expected = spec.get("expected_step_s", EXPECTED_STEP_S)
    if isinstance(expected, bool) or not isinstance(expected, (int, float)) or not 0 < expected <= 3600:
        raise ValueError(f"expected_step_s: seconds in (0, 3600] expected, got {expected!r}")
    swarm_file = _path(spec, "swarm_file", base_dir, required=True)
    try:
        swarm = SwarmInfo.load(swarm_file)
    except SwarmError as exc:
        raise ValueError(f"swarm_file: {exc}") from None
    return PetalsEngine(swarm, python=_path(spec, "python", base_dir, required=False), expected_step_s=float(expected),
                        swarm_file=swarm_file)
