"""Real text generation over a forced PETALS chain (runs inside .venv-petals, in the client process).

The gateway's ``petals`` engine sends ``generate`` requests to ``python -m serving.petals.client``;
this module runs one: the tokenizer and chat template from the model's directory, one inference
session over exactly the granted spans, sampling on the client (greedy at temperature 0), tokens
turned into text as they come (``serving.petals.text``), stop strings, and a session closed in every
case (end, stop, cancel, failure).

Fail-over: every step has a deadline (``max(floor, factor x expected step time)``, the expected time
being the larger of the gateway's figure and this session's mean step so far; the prompt's step scaled
by its length), and a hop that fails is not retried here (the lease names one chain: the gateway takes
a new one).  A resumed request (``resume_ids``: the answer so far) prefills the prompt and those ids in
one step and replays them through the detokenizer and the stop scanner, so the text that follows is
exactly what the uninterrupted answer would have streamed next.
"""

from __future__ import annotations

import copy
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from petals.client.inference_session import InferenceSession
from petals.client.routing.sequence_manager import MissingBlocksError

from serving.petals import client as _client
from serving.petals.text import IncrementalDetokenizer, StopScanner


PREFILL_TOKENS_PER_STEP = 128   # a prompt step gets one step deadline per this many tokens (at least one)


class StepTimeout(TimeoutError):
    """A hop gave no answer within its step deadline (hung, or far slower than expected)."""


def deadline_s(spec: dict, expected_s: float) -> float:
    """max(floor, factor x expected): the gateway's rule (serving.gateway.engine.step_deadline)."""
    return max(float(spec.get("floor_s", 2.0)), float(spec.get("factor", 10.0)) * expected_s)


class RequestTooLong(ValueError):
    """The request cannot fit the servers' KV budget: the request's fault, not a server's.
    ``param``: "prompt" when the prompt alone leaves no room for one token, else "max_tokens"."""

    def __init__(self, message: str, param: str):
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Sampling:
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None

    def generator(self) -> torch.Generator:
        gen = torch.Generator()
        if self.seed is None:
            gen.seed()
        else:
            gen.manual_seed(int(self.seed))
        return gen


def sample(logits: torch.Tensor, sampling: Sampling, gen: torch.Generator) -> int:
    """One token id from 1-D ``logits``: argmax at temperature 0, else nucleus sampling."""
    if sampling.temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits.float() / sampling.temperature, dim=-1)
    if sampling.top_p < 1.0:
        sorted_probs, order = torch.sort(probs, descending=True)
        # keep the smallest set whose mass reaches top_p (the first token always)
        drop = torch.cumsum(sorted_probs, dim=-1) - sorted_probs >= sampling.top_p
        sorted_probs[drop] = 0.0
        probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=gen))


class TextGenerator:
    """Generates for one ``Client`` (its model's embeddings, final norm and LM head run here)."""

    def __init__(self, client: "_client.Client", model_dir: str):
        self.client = client
        self.model_dir = model_dir
        self._tokenizer = None
        self._lock = threading.Lock()

    @property
    def tokenizer(self):
        with self._lock:
            if self._tokenizer is None:
                from transformers import AutoTokenizer
                # a SentencePiece model loads as the slow tokenizer: the ids every runtime agrees on
                slow = (Path(self.model_dir) / "tokenizer.model").exists()
                self._tokenizer = AutoTokenizer.from_pretrained(self.model_dir, use_fast=not slow)
            return self._tokenizer

    def prompt_ids(self, msg: dict) -> list[int]:
        tok = self.tokenizer
        if msg.get("kind") == "chat":
            if not getattr(tok, "chat_template", None):
                raise ValueError(f"the model in {self.model_dir} has no chat template in its tokenizer config")
            messages = [{"role": m["role"], "content": m["content"]} for m in msg.get("messages", [])]
            ids = list(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))
        else:
            ids = list(tok(msg.get("prompt", ""))["input_ids"])
        if not ids and tok.bos_token_id is not None:    # an empty prompt with a tokenizer that adds no BOS
            ids = [tok.bos_token_id]
        return ids

    def generate(self, msg: dict, emit: Callable[[dict], None], cancelled: threading.Event,
                 fail: Callable[[BaseException], None] | None = None) -> dict:
        """Run one ``generate`` message; ``emit`` gets the deltas; returns the end message's fields.  A
        failure mid-session goes to ``fail`` before the sessions close (closing a hung server's session
        waits up to a step deadline: the gateway can fail over meanwhile), then is raised."""
        rid, chain = msg["id"], msg["chain"]
        tok, model = self.tokenizer, self.client.model
        ids = self.prompt_ids(msg)
        max_new = int(msg.get("max_tokens", 16))
        limit = msg.get("max_length")
        if limit is not None and len(ids) + max_new > int(limit):
            raise RequestTooLong(f"the prompt ({len(ids)} tokens) plus max_tokens ({max_new}) exceed the longest "
                                 f"sequence this swarm's servers take ({limit} tokens)",
                                 "prompt" if len(ids) >= int(limit) else "max_tokens")
        sampling = Sampling(float(msg.get("temperature", 1.0)), float(msg.get("top_p", 1.0)), msg.get("seed"))
        gen = sampling.generator()
        detok = IncrementalDetokenizer(lambda t: tok.decode(t, skip_special_tokens=True), context=ids)
        stops = StopScanner(msg.get("stop") or ())
        eos = tok.eos_token_id
        pending: list[int] = []     # ids whose text is not out yet
        finish = "length"

        def out(text: str, token: int | None = None) -> None:
            if token is not None:
                pending.append(token)
            if text:
                emit({"id": rid, "event": "delta", "text": text, "tokens": list(pending)})
                pending.clear()

        resume_ids = [int(t) for t in msg.get("resume_ids") or ()]
        if len(resume_ids) > max_new:
            raise ValueError(f"resume_ids: {len(resume_ids)} tokens already, max_tokens is {max_new}")
        replayed = []                 # the answer so far through the same text pipeline: its state, not its text
        for t in resume_ids:
            text, stopped = stops.push(detok.push(t))
            replayed.append(text)
            if stopped:
                raise ValueError("resume_ids: the answer so far already ends at a stop string")
        if "".join(replayed) != (msg.get("resume_text") or ""):
            raise ValueError("resume_text is not what resume_ids stream as: cannot resume exactly")
        n_out = len(resume_ids)

        spec = msg.get("deadline") or {}
        expected = float(spec.get("expected_step_s", 0.1))
        prefill = ids + resume_ids
        config = copy.copy(self.client.base.config)
        config.max_retries = 1        # fail at once: the gateway fails over to another chain
        config.request_timeout = deadline_s(spec, expected) * max(1.0, len(prefill) / PREFILL_TOKENS_PER_STEP)
        config.connect_timeout = min(config.connect_timeout, config.request_timeout)
        _ = self.client.base.rpc_info      # fetched once, with the shared config's patience
        _client._failed.peer = None
        manager = self.client.manager_for(chain, config=config, routing_feedback=False)
        steps, spent = 0, 0.0
        with torch.inference_mode():
            session = InferenceSession(manager, max_length=len(ids) + max_new)
            try:
                hidden = model.model.embed_tokens(torch.tensor([prefill]))
                for _ in range(max_new - n_out):        # none when only the end was lost: the flush below
                    if cancelled.is_set():
                        finish = "cancelled"
                        break
                    t0 = time.perf_counter()
                    try:
                        h = session.step(hidden)
                    except TimeoutError as exc:     # asyncio's and concurrent.futures' too
                        raise StepTimeout(f"no answer within the step deadline of {config.request_timeout:.1f} s "
                                          f"(hung?)") from exc
                    if hidden.shape[1] == 1:
                        steps, spent = steps + 1, spent + time.perf_counter() - t0
                    config.request_timeout = deadline_s(spec, max(expected, spent / steps if steps else 0.0))
                    logits = model.lm_head(model.model.norm(h[:, -1:]))[0, -1]
                    nxt = sample(logits, sampling, gen)
                    n_out += 1
                    if nxt == eos:
                        finish = "stop"
                        break
                    text, stopped = stops.push(detok.push(nxt))
                    out(text, nxt)
                    if stopped:
                        finish = "stop"
                        break
                    hidden = model.model.embed_tokens(torch.tensor([[nxt]]))
                if finish == "length":
                    text, stopped = stops.push(detok.flush())
                    out(text + ("" if stopped else stops.flush()))
                    finish = "stop" if stopped else "length"
                if pending and finish != "cancelled":     # ids whose text never showed (held back, then cut)
                    emit({"id": rid, "event": "delta", "text": "", "tokens": list(pending)})
            except Exception as exc:
                if fail is not None:
                    fail(exc)
                raise
            finally:
                session.close()
        return {"finish_reason": finish, "prompt_tokens": len(ids), "completion_tokens": n_out}


def failed_peer(exc: BaseException, chain) -> str | None:
    """The server (peer id) a failure points at: the last step or session opening that failed on this
    thread, else the hop holding the blocks PETALS found no server for."""
    peer = getattr(_client._failed, "peer", None)
    if peer:
        return peer
    if isinstance(exc, MissingBlocksError):     # "No servers holding blocks [3, 4] are online" / "blocks 3"
        m = re.search(r"blocks (\[[\d, ]*\]|\d+)", str(exc))
        blocks = [int(b) for b in re.findall(r"\d+", m.group(1))] if m else []
        for p, start, end in chain or []:
            if any(start <= b < end for b in blocks):
                return p
    return None
