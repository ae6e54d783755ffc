"""Real text generation over a forced PETALS chain (runs inside .venv-petals, in the client process).

The gateway's ``petals`` engine sends ``generate`` requests to ``python -m serving.petals.client``;
this module runs one: the tokenizer and chat template from the model's directory, one inference
session over exactly the granted spans, sampling on the client (greedy at temperature 0), tokens
turned into text as they come (``serving.petals.text``), stop strings, and a session closed in every
case (end, stop, cancel, failure).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from petals.client.inference_session import InferenceSession
from petals.client.routing.sequence_manager import MissingBlocksError

from serving.petals import client as _client
from serving.petals.text import IncrementalDetokenizer, StopScanner


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

    def generate(self, msg: dict, emit: Callable[[dict], None], cancelled: threading.Event) -> dict:
        """Run one ``generate`` message; ``emit`` gets the deltas; returns the end message's fields."""
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
        finish, n_out = "length", 0

        def out(text: str, token: int | None = None) -> None:
            if token is not None:
                pending.append(token)
            if text:
                emit({"id": rid, "event": "delta", "text": text, "tokens": list(pending)})
                pending.clear()

        _client._failed.peer = None
        manager = self.client.manager_for(chain)
        with torch.inference_mode():
            session = InferenceSession(manager, max_length=len(ids) + max_new)
            try:
                hidden = model.model.embed_tokens(torch.tensor([ids]))
                for _ in range(max_new):
                    if cancelled.is_set():
                        finish = "cancelled"
                        break
                    h = session.step(hidden)
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
