"""PETALS client side of the testbed (runs inside .venv-petals).

* ``ChainSequenceManager``: a ``RemoteSequenceManager`` whose ``make_sequence`` returns
  exactly the granted chain's spans (including part of a server's range), so a request
  runs on the chain the dispatcher granted and nowhere else.
* plain PETALS routing (its own ``min_latency`` Dijkstra) for the PETALS baseline.
* a per-hop delay in the client transport: every step sent to a server waits that
  server's injected round-trip time first (netem is not available here; see
  docs/petals-testbed.md).
* three fixes for known client hangs: a server session's ``close()`` marks it closed even
  when closing the stream fails (broken pipe), waits for a hung server's last answer at
  most one step deadline (``request_timeout``), and ``__del__`` never blocks (it may run
  on the event-loop thread during garbage collection or at interpreter shutdown).

``python -m serving.petals.client MODEL_DIR --initial-peers MADDR --dht-prefix P`` serves
JSON lines on stdin/stdout: ``{"op": "run", "id": .., "chain": [[peer_id, start, end], ..]
| null, "input_tokens": n, "output_tokens": m}`` -> ``{"id": .., "ok": true, "t_start": ..,
"t_end": .., "route": [[peer_id, start, end], ..], "hops": {peer_id: seconds}, ...}``.
Timestamps are ``time.time()`` so the orchestrator can line them up with its own.  Per hop
the answer also gives ``setup`` (opening + closing its session) and ``first`` (the prompt
step).  ``{"op": "probe", ...}`` takes the same fields and runs one session over exactly the
chain's blocks (a sub-range of the model allowed) on random hidden states: the calibration.

``{"op": "generate", "id": .., "chain": [[peer_id, start, end], ..], "kind": "chat" | "completion",
"messages": [{"role", "content"}, ..] | "prompt": str, "max_tokens", "temperature", "top_p", "stop",
"seed"}`` is real text generation for the gateway's ``petals`` engine: tokenizer and chat template
from the model's directory, one KV session over exactly the chain, and as tokens come
``{"id": .., "event": "delta", "text": .., "tokens": [..]}``, then ``{"id": .., "event": "end", "ok":
true, "finish_reason": "stop" | "length" | "cancelled", "prompt_tokens", "completion_tokens"}`` (or
``"ok": false, "error", "peer"``: the server that failed, where known, and ``"timeout": true`` when it
did not answer within its step deadline).  A ``generate`` may carry ``"resume_ids"`` and ``"resume_text"``
(the answer so far, after a fail-over: prefilled with the prompt, only what follows is streamed) and
``"deadline": {"floor_s", "factor", "expected_step_s"}`` (a step not answered within ``max(floor_s,
factor x expected)`` fails its hop).  ``{"op": "cancel", "id": ..}`` stops it after the step in flight and
closes its session.  ``{"op": "connect", "peers": [[peer_id, multiaddr], ..], "spans": [[peer_id, start,
end], ..]}`` dials servers that (re)started and waits until their block ranges are visible; answers
``{"op": "connect", "ok": true, "dial_s", "visible_s"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from petals import AutoDistributedModelForCausalLM  # noqa: E402
from petals.client import inference_session as _isess  # noqa: E402
from petals.client.inference_session import InferenceSession  # noqa: E402
from petals.client.routing.sequence_manager import MissingBlocksError, RemoteSequenceManager  # noqa: E402
from petals.data_structures import RemoteSpanInfo  # noqa: E402
from hivemind.moe.client.remote_expert_worker import RemoteExpertWorker  # noqa: E402
from hivemind.proto import runtime_pb2  # noqa: E402

# how long a forced chain's span missing from the routing table is looked for before its hop fails
# (a server the plan just moved announces it within an update period; a dead one keeps its old record)
SPAN_WAIT_S = 3.0

# --------------------------------------------------------------------------- hang fixes
_ServerSession = _isess._ServerInferenceSession


def _close_marking_closed(self) -> None:
    t0 = time.perf_counter()
    try:
        if self._outputs_stream is not None and getattr(self, "step_failed", False):
            # its step failed (a dead or hung server): send the end of the session (a server that comes back
            # frees its cache) without waiting for an answer that may never come
            RemoteExpertWorker.run_coroutine(self._inputs_queue.put(runtime_pb2.ExpertRequest()))
        elif self._outputs_stream is not None:
            # closing waits for the server's answer to the end-of-session message: bounded by the session's
            # request timeout, so a hung (stopped) server cannot hold the request's thread forever
            RemoteExpertWorker.run_coroutine(asyncio.wait_for(self._aclose_stream(), self.config.request_timeout))
    except Exception:  # broken pipe or no answer while closing: the stream is gone either way
        pass
    finally:
        self._outputs_stream = self._inputs_queue = None
        self.closed = True
        _record("setup", self.span.peer_id.to_base58(), time.perf_counter() - t0)


def _never_block_del(self) -> None:
    # Closing needs the event-loop thread; from __del__ (possibly on that very thread) it
    # can deadlock, so a session still open at collection time is simply dropped.
    self._outputs_stream = self._inputs_queue = None


_ServerSession.close = _close_marking_closed
_ServerSession.__del__ = _never_block_del
InferenceSession.__del__ = lambda self: None

# --------------------------------------------------------------------------- per-hop timing and delay
HOP_DELAY_S: dict[str, float] = {}          # peer id (base58) -> injected round trip, seconds
# per request (thread-local, the request's own thread): per peer, "acc" the summed step times and
# "steps" their count, "first" the first step (the prompt), "setup" opening + closing the session
_hop_times = threading.local()
_failed = threading.local()        # .peer: the server whose step or session opening failed last (this thread)
_orig_step = _ServerSession.step
_orig_enter = InferenceSession._enter_server_sessions


def _record(kind: str, peer: str, dt: float) -> None:
    acc = getattr(_hop_times, kind, None)
    if acc is not None:
        acc[peer] = acc.get(peer, 0.0) + dt


def _delayed_step(self, *args, **kwargs):
    peer = self.span.peer_id.to_base58()
    delay = HOP_DELAY_S.get(peer, 0.0)
    first = not self.stepped
    t0 = time.perf_counter()
    if delay > 0:
        time.sleep(delay)       # request and reply each travel half of it; one sleep is the same wait
    try:
        out = _orig_step(self, *args, **kwargs)
    except BaseException:
        _failed.peer = peer
        self.step_failed = True
        raise
    dt = time.perf_counter() - t0
    _record("acc", peer, dt)
    _record("steps", peer, 1)
    if first:
        _record("first", peer, dt)
    return out


def _timed_enter(self, chosen_spans):
    # PETALS opens the chain's server sessions one after the other (a stream and its
    # rpc_inference call per hop); timed per hop here, opened exactly as PETALS does.
    sessions = []
    try:
        for span in chosen_spans:
            t0 = time.perf_counter()
            _failed.peer = span.peer_id.to_base58()      # until its session is open
            sessions += _orig_enter(self, [span])
            _failed.peer = None
            _record("setup", span.peer_id.to_base58(), time.perf_counter() - t0)
        return sessions
    except BaseException:
        self._exit_server_sessions(sessions)
        raise


_ServerSession.step = _delayed_step
InferenceSession._enter_server_sessions = _timed_enter


# --------------------------------------------------------------------------- forced chain
class ChainSequenceManager(RemoteSequenceManager):
    """Routes every session over ``chain`` = [(peer_id, start, end), ...] exactly."""

    def __init__(self, config, block_uids, *, dht=None, state=None, chain=None, offset: int = 0,
                 routing_feedback: bool = True, refresh=None, span_wait_s: float = 0.0):
        super().__init__(config, block_uids, dht=dht, state=state)
        self.chain = list(chain or [])
        self.offset = offset        # the model's block number of this manager's block 0 (a sub-range)
        # False: a failed hop is not dropped from the shared routing table nor banned (the gateway's
        # dispatcher masks it instead, for as long as its liveness rules say)
        self.routing_feedback = routing_feedback
        # a span the chain names but the routing table does not show yet (a server that just started or took
        # a new block range: the plan moved before this client's next update) is looked up again with
        # ``refresh`` for up to ``span_wait_s`` before its hop fails
        self.refresh, self.span_wait_s = refresh, span_wait_s

    def __getitem__(self, ix):
        sub = super().__getitem__(ix)
        sub.chain = self.chain
        sub.offset = self.offset + (ix.start or 0 if isinstance(ix, slice) else int(ix))
        sub.routing_feedback = self.routing_feedback
        sub.refresh, sub.span_wait_s = self.refresh, self.span_wait_s
        return sub

    def _known(self, peer: str, lo: int, hi: int) -> list:
        return [s for s in self.state.sequence_info.spans_containing_block[lo]
                if s.peer_id.to_base58() == peer and s.start <= lo and s.end >= hi]

    def on_request_failure(self, peer_id):
        if self.routing_feedback:
            super().on_request_failure(peer_id)

    def make_sequence(self, start_index: int = 0, end_index: int | None = None, *, mode: str,
                      cache_tokens_needed: int | None = None) -> list[RemoteSpanInfo]:
        end_index = len(self) if end_index is None else end_index
        spans = []
        for peer, start, end in self.chain:
            start, end = start - self.offset, end - self.offset
            lo, hi = max(start, start_index), min(end, end_index)
            if lo >= hi:
                continue
            known = self._known(peer, lo, hi)
            deadline = time.monotonic() + self.span_wait_s
            while not known and self.refresh is not None and time.monotonic() < deadline:
                self.refresh()
                known = self._known(peer, lo, hi)
                if not known:
                    time.sleep(0.1)
            if not known:
                raise MissingBlocksError(list(range(lo, hi)))
            spans.append(RemoteSpanInfo(peer_id=known[0].peer_id, start=lo, end=hi,
                                        server_info=known[0].server_info))
        covered = sum(s.end - s.start for s in spans)
        if covered != end_index - start_index:
            raise RuntimeError(f"chain {self.chain} does not cover blocks {start_index}:{end_index}")
        return spans


class Client:
    def __init__(self, model_dir: str, initial_peers: list[str], dht_prefix: str, max_retries: int = 6,
                 update_period: float = 5.0):
        self.model_dir = model_dir
        self.model = AutoDistributedModelForCausalLM.from_pretrained(
            model_dir, initial_peers=initial_peers, dht_prefix=dht_prefix, max_retries=max_retries,
            use_server_to_server=False, show_route=False, torch_dtype=torch.float32, request_timeout=60,
            update_period=update_period)
        self.model.eval()
        self.base: RemoteSequenceManager = self.model.model.layers.sequence_manager
        self.base.make_sequence(0, len(self.base), mode="min_latency")   # waits for the DHT
        self.vocab = self.model.config.vocab_size

    def wait_for_peers(self, peers: set[str], timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            seen = {s.peer_id.to_base58() for s in self.base.state.sequence_info.spans_by_priority}
            if peers <= seen:
                return
            self.base.update(wait=True)
            time.sleep(0.5)
        raise RuntimeError(f"servers not visible in the DHT: {sorted(peers - seen)}")

    def connect(self, peers: list, spans: list, timeout_s: float = 60) -> dict:
        """A server that (re)started: ``peers`` [[peer_id, multiaddr], ..] are dialled at once (a restarted
        server keeps its peer id, but this client's p2p daemon may have dropped its address with the old
        connection and then fails to route to it for a while), then wait until the swarm's state shows each
        of ``spans`` [[peer_id, start, end], ..] (a server's new block range) so a forced chain finds it."""
        from hivemind.p2p import PeerID
        from multiaddr import Multiaddr
        t0 = time.monotonic()
        p2p = self.base.state.p2p
        errors = []
        for peer, maddr in peers:
            pid = PeerID.from_base58(peer)
            try:    # a ban from its failures before the restart would hide it from the swarm's state
                self.base.state.banned_peers.register_success(pid)
            except KeyError:
                pass
            try:    # the address without its /p2p/ part: the daemon keeps it for the peer and dials it
                addr = Multiaddr(maddr.split("/p2p/")[0])
                RemoteExpertWorker.run_coroutine(p2p._client.connect(pid, [addr]))
            except Exception as exc:   # noqa: BLE001 - the DHT may still lead to it; the span wait decides
                errors.append(f"{peer}: {type(exc).__name__}: {exc}")
        dialled = time.monotonic()
        deadline = t0 + timeout_s
        while True:
            self.base.update(wait=True)
            seen = self.base.state.sequence_info.spans_by_priority
            missing = [(p, a, b) for p, a, b in spans
                       if not any(s.peer_id.to_base58() == p and s.start <= int(a) and s.end >= int(b) for s in seen)]
            if not missing:
                break
            if time.monotonic() >= deadline:
                raise RuntimeError(f"spans not visible in the DHT within {timeout_s:.0f} s: {missing}")
            time.sleep(0.25)
        return {"dial_s": round(dialled - t0, 3), "visible_s": round(time.monotonic() - t0, 3), "dial_errors": errors}

    def manager_for(self, chain, *, config=None, routing_feedback: bool = True,
                    step_timeout_s: float | None = None, max_retries: int | None = None) -> RemoteSequenceManager:
        """The manager for one request: PETALS' own routing (``chain`` None) or exactly ``chain``.
        ``config`` (a copy of the model's, e.g. with the request's own timeouts) replaces the shared one;
        ``step_timeout_s``: a forced chain's deadline per hop step and session opening (PETALS'
        ``request_timeout`` / ``connect_timeout``: a hung server fails the step instead of holding it
        for minutes); ``max_retries``: attempts per hop (1: fail at once, whoever holds the lease fails over)."""
        if chain is None:
            return self.base
        config = config or self.base.config
        changes = {}
        if step_timeout_s is not None:
            changes.update(request_timeout=float(step_timeout_s), connect_timeout=float(step_timeout_s))
        if max_retries is not None:
            changes["max_retries"] = int(max_retries)
        if changes:
            config = dataclasses.replace(config, **changes)
        return ChainSequenceManager(config, self.base.block_uids, dht=self.base.dht,
                                    state=self.base.state, chain=chain, routing_feedback=routing_feedback,
                                    refresh=lambda: self.base.update(wait=True), span_wait_s=SPAN_WAIT_S)

    def _start_timing(self) -> None:
        _hop_times.acc, _hop_times.steps, _hop_times.first, _hop_times.setup = {}, {}, {}, {}

    def _stop_timing(self) -> dict:
        out = {"hops": dict(_hop_times.acc), "steps": dict(_hop_times.steps), "first": dict(_hop_times.first),
               "setup": dict(_hop_times.setup)}
        _hop_times.acc = _hop_times.steps = _hop_times.first = _hop_times.setup = None
        return out

    def probe(self, chain, input_tokens: int, output_tokens: int, seed: int = 0) -> dict:
        """One inference session over exactly ``chain``'s blocks (a sub-range of the model is allowed:
        the chain covers blocks [first start, last end)), fed random hidden states: the prompt, then
        ``output_tokens - 1`` one-token steps, as a generation does.  Per hop: set-up (open + close),
        first step, and the summed steps.  Used to calibrate servers on the swarm they run in."""
        lo, hi = int(chain[0][1]), int(chain[-1][2])
        # fetched once on the shared state (a sub-range's copy of it would fetch it on every probe)
        _ = self.base.rpc_info
        gen = torch.Generator().manual_seed(seed)
        hidden = torch.randn(1, max(1, input_tokens), self.model.config.hidden_size, generator=gen)
        manager = ChainSequenceManager(self.base.config, self.base.block_uids[lo:hi], dht=self.base.dht,
                                       state=self.base.state[lo:hi], chain=chain, offset=lo)
        self._start_timing()
        t_start = time.time()
        try:
            with torch.inference_mode():
                session = InferenceSession(manager, max_length=hidden.shape[1] + output_tokens)
                try:
                    out = session.step(hidden)
                    for _ in range(output_tokens - 1):
                        out = session.step(out[:, -1:])
                finally:
                    session.close()
        finally:
            timing = self._stop_timing()
        return {"t_start": t_start, "t_end": time.time(), **timing}

    def run(self, chain, input_tokens: int, output_tokens: int, seed: int = 0, *,
            resume_tokens: list[int] | None = None, step_timeout_s: float | None = None,
            max_retries: int | None = None, routing_feedback: bool = True) -> dict:
        """Greedy generation of ``output_tokens`` after a random prompt of ``input_tokens`` (from ``seed``).
        ``resume_tokens``: the tokens a failed attempt already produced; the prompt plus them is prefilled
        and only the rest is generated (a fail-over resumes without repeating or losing a token).  On a
        failure the exception carries ``tokens`` (all produced so far, resumed ones included)."""
        gen = torch.Generator().manual_seed(seed)
        prompt = torch.randint(3, self.vocab, (1, max(1, input_tokens)), generator=gen)
        tokens = [int(t) for t in (resume_tokens or [])]
        ids = torch.cat([prompt, torch.tensor([tokens], dtype=prompt.dtype)], dim=1) if tokens else prompt
        manager = self.manager_for(chain, step_timeout_s=step_timeout_s, max_retries=max_retries,
                                   routing_feedback=routing_feedback)
        _failed.peer = None       # this thread's last failure belongs to an earlier request
        self._start_timing()
        t_start = time.time()
        t_first = None
        with torch.inference_mode():
            session = InferenceSession(manager, max_length=prompt.shape[1] + output_tokens)
            try:
                hidden = self.model.model.embed_tokens(ids)
                for _ in range(output_tokens - len(tokens)):
                    out = session.step(hidden)
                    logits = self.model.lm_head(self.model.model.norm(out[:, -1:]))
                    nxt = logits.argmax(-1)
                    tokens.append(int(nxt))
                    if t_first is None:
                        t_first = time.time()     # the first token is out (a streaming client would have it)
                    hidden = self.model.model.embed_tokens(nxt)
                route = [[s.span.peer_id.to_base58(), s.span.start, s.span.end] for s in session._server_sessions]
            except BaseException as exc:
                exc.tokens = list(tokens)     # what a fail-over resumes from
                raise
            finally:
                session.close()
        t_end = time.time()
        timing = self._stop_timing()
        return {"t_start": t_start, "t_first": t_first, "t_end": t_end, "route": route, **timing, "tokens": tokens}


def failed_peer(exc: BaseException, chain) -> str | None:
    """The server (peer id) a failed ``run`` points at: its last step or session opening that failed on
    this thread, else the hop holding the blocks PETALS found no server for (as the gateway's engine does)."""
    peer = getattr(_failed, "peer", None)
    if peer:
        return peer
    if isinstance(exc, MissingBlocksError):
        import re
        m = re.search(r"blocks (\[[\d, ]*\]|\d+)", str(exc))
        blocks = [int(b) for b in re.findall(r"\d+", m.group(1))] if m else []
        for p, start, end in chain or []:
            if any(int(start) <= b < int(end) for b in blocks):
                return p
    return None


def serve(client: Client, max_workers: int) -> None:
    out_lock = threading.Lock()

    def emit(obj: dict) -> None:
        with out_lock:
            sys.stdout.write(json.dumps(obj) + "\n")
            sys.stdout.flush()

    def handle(msg: dict) -> None:
        try:
            if msg.get("op") == "probe":
                res = client.probe(msg.get("chain"), int(msg["input_tokens"]), int(msg["output_tokens"]),
                                   seed=int(msg.get("seed", 0)))
            else:
                res = client.run(msg.get("chain"), int(msg["input_tokens"]), int(msg["output_tokens"]),
                                 seed=int(msg.get("seed", 0)), resume_tokens=msg.get("resume_tokens"),
                                 step_timeout_s=msg.get("step_timeout_s"), max_retries=msg.get("max_retries"),
                                 routing_feedback=bool(msg.get("routing_feedback", True)))
            emit({"id": msg["id"], "ok": True, **res})
        except Exception as exc:  # reported per request; the orchestrator decides (a fail-over needs the server)
            emit({"id": msg["id"], "ok": False, "error": f"{type(exc).__name__}: {exc}",
                  "peer": failed_peer(exc, msg.get("chain")), "tokens": getattr(exc, "tokens", []),
                  "t_fail": time.time()})

    cancels: dict[object, threading.Event] = {}
    generator = None

    def generate(msg: dict) -> None:
        from serving.petals.generate import RequestTooLong, StepTimeout, failed_peer
        sent = threading.Event()

        def end(fields: dict) -> None:          # once: a failure is reported before the sessions close
            if not sent.is_set():
                sent.set()
                emit({"id": msg["id"], "event": "end", **fields})

        def fail(exc: BaseException) -> None:
            if isinstance(exc, RequestTooLong):
                end({"ok": False, "error": str(exc), "too_long": True, "param": exc.param})
            else:  # the engine turns it into an EngineError (a HopError when the peer is known)
                end({"ok": False, "error": f"{type(exc).__name__}: {exc}", "peer": failed_peer(exc, msg.get("chain")),
                     "timeout": isinstance(exc, StepTimeout)})
        try:
            end({"ok": True, **generator.generate(msg, emit, cancels[msg["id"]], fail)})
        except Exception as exc:
            fail(exc)
        finally:
            cancels.pop(msg["id"], None)

    with ThreadPoolExecutor(max_workers=max_workers) as pool:
        emit({"op": "ready"})
        for line in sys.stdin:
            if not line.strip():
                continue
            msg = json.loads(line)
            if msg.get("op") == "delays":
                HOP_DELAY_S.clear()
                HOP_DELAY_S.update({k: float(v) for k, v in msg["delays"].items()})
                emit({"op": "delays", "ok": True})
            elif msg.get("op") == "peers":
                try:
                    client.wait_for_peers(set(msg["peers"]))
                    emit({"op": "peers", "ok": True})
                except Exception as exc:
                    emit({"op": "peers", "ok": False, "error": str(exc)})
            elif msg.get("op") == "connect":
                def connect(msg=msg):
                    try:
                        emit({"op": "connect", "ok": True, **client.connect(msg.get("peers") or [],
                                                                            msg.get("spans") or [])})
                    except Exception as exc:
                        emit({"op": "connect", "ok": False, "error": f"{type(exc).__name__}: {exc}"})
                pool.submit(connect)        # requests in flight go on meanwhile
            elif msg.get("op") in ("run", "probe"):
                pool.submit(handle, msg)
            elif msg.get("op") == "generate":
                if generator is None:
                    from serving.petals.generate import TextGenerator
                    generator = TextGenerator(client, client.model_dir)
                cancels[msg["id"]] = threading.Event()
                pool.submit(generate, msg)
            elif msg.get("op") == "cancel":
                if msg["id"] in cancels:
                    cancels[msg["id"]].set()
            elif msg.get("op") == "quit":
                break
        for ev in list(cancels.values()):      # quit or the caller gone: no generation outlives it
            ev.set()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="PETALS client worker of the chainplan testbed and the gateway's petals engine")
    p.add_argument("model_dir")
    p.add_argument("--initial-peers", nargs="+", required=True)
    p.add_argument("--dht-prefix", required=True)
    p.add_argument("--max-workers", type=int, default=64)
    p.add_argument("--max-retries", type=int, default=6, help="attempts per hop before a request fails")
    p.add_argument("--update-period", type=float, default=5.0,
                   help="seconds between the client's refreshes of the swarm's state from the DHT")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    client = Client(a.model_dir, a.initial_peers, a.dht_prefix, max_retries=a.max_retries, update_period=a.update_period)
    serve(client, a.max_workers)
    sys.stdout.flush()
    os._exit(0)   # skip interpreter teardown: hivemind's threads can block it


if __name__ == "__main__":
    raise SystemExit(main())
