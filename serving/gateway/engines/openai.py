"""The ``openai`` engine: each chain is one OpenAI-compatible server; the gateway forwards and streams back.

vLLM, SGLang, llama.cpp's server, exo and Parallax build one engine per pipeline, so a chain of
the plan is one URL.  The engines file (written by ``python -m solvers export --runtime ...
--engines-file FILE``) maps each chain, keyed by its servers in order, to that URL and the
chain's capacity; keyed by servers, an entry still matches after a plan switch keeps the chain.

Upstream requests always stream (the first token is forwarded as it comes), over keep-alive
connections of aiohttp's client (``serving.gateway.upstream``, a thin adapter): an answer read
to its end (``[DONE]``, then the rest of the body) leaves its connection for the next request.  A
connection that the server closed before its answer ("Server disconnected": llama.cpp's server
sometimes drops a reused idle one) is retried once, on another connection (the pool has dropped the
one that failed), before any of the answer's text was read.  Each engine gets at most
its chain's capacity of requests at a time (the dispatcher already grants no more; this keeps it
true if several gateways or a stale plan disagree).

Hop failures (``HopError``, naming the chain's first server: the engine is the chain's as a whole):
the connection refused, reset or dropped mid-answer, and no answer in time: nothing within
``first_token_timeout_s`` of sending the request, or, once it streams, no chunk within the step
deadline ``max(2 s, 10 x max(expected_step_s, the mean gap between this answer's chunks))``.  An
HTTP error answer or an ``error`` event is the engine's verdict on the request, not a hop failure.

Resuming after a fail-over needs the model's tokenizer (``tokenizer``: its local directory): the
continuation is a ``/v1/completions`` request whose prompt is what the chain saw (the completion's
prompt, or the chat rendered with the model's chat template) followed by the answer so far, with
``max_tokens`` less the answer's tokens; the engine re-reads that text, which is exact when it
tokenizes back to the tokens the model produced (see docs/gateway.md for when it does not).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Mapping, Sequence

from solvers.plan_format import HopDoc

from ..engine import Delta, EngineError, GenerationRequest, HopError, Resume, step_deadline
from ..upstream import UpstreamError, UpstreamPool, UpstreamProtocolError, UpstreamResponse

__all__ = ["ENGINES_FORMAT", "EngineEntry", "EnginesFile", "OpenAIEngine", "Tokenizer", "from_spec",
           "load_engines_file"]

ENGINES_FORMAT = "chainplan-engines/1"
EXPECTED_STEP_S = 0.1           # a chunk's expected time when the model entry names none: a 2 s step deadline
FIRST_TOKEN_TIMEOUT_S = 30.0    # prefill, and the engine's own queue (some engines run one request at a time)
REPLACEMENT = "\ufffd"
DRAIN_S = 0.05                  # after [DONE], the longest the rest of the answer is waited for
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class EngineEntry:
    servers: tuple[str, ...]      # the chain's servers in order: the key
    url: str                      # the engine's OpenAI base URL, ending in /v1
    capacity: int                 # the chain's capacity: the engine's concurrency limit
    model: str | None = None      # the name the engine serves (its --served-model-name / --alias)


@dataclass(frozen=True)
class EnginesFile:
    runtime: str
    model: str | None
    engines: tuple[EngineEntry, ...]

    @classmethod
    def from_dict(cls, d: Any) -> "EnginesFile":
        def fail(field: str, msg: str) -> ValueError:
            return ValueError(f"engines file: {field}: {msg}")
        if not isinstance(d, dict) or d.get("format") != ENGINES_FORMAT:
            raise fail("format", f"expected {ENGINES_FORMAT!r}, got {d.get('format') if isinstance(d, dict) else d!r}")
        entries = []
        for i, e in enumerate(d.get("engines") or []):
            where = f"engines[{i}]"
            if not isinstance(e, dict):
                raise fail(where, "must be an object")
            servers = e.get("servers")
            if not isinstance(servers, list) or not servers or not all(isinstance(s, str) for s in servers):
                raise fail(f"{where}.servers", "must be a non-empty list of server names")
            url = e.get("url")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise fail(f"{where}.url", f"must be an http(s) URL, got {url!r}")
            cap = e.get("capacity")
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
                raise fail(f"{where}.capacity", f"must be a positive integer, got {cap!r}")
            entries.append(EngineEntry(tuple(servers), url.rstrip("/"), cap, e.get("model") or d.get("model")))
        keys = [e.servers for e in entries]
        if len(set(keys)) != len(keys):
            raise fail("engines", "two entries for the same chain")
        return cls(runtime=str(d.get("runtime", "")), model=d.get("model"), engines=tuple(entries))

    def to_dict(self) -> dict[str, Any]:
        return {"format": ENGINES_FORMAT, "runtime": self.runtime, "model": self.model,
                "engines": [{"servers": list(e.servers), "url": e.url, "capacity": e.capacity,
                             **({"model": e.model} if e.model and e.model != self.model else {})}
                            for e in self.engines]}


def load_engines_file(path: str | Path) -> EnginesFile:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"engines file {path}: {exc}") from None
    return EnginesFile.from_dict(data)


class _Retry(Exception):
    """The server dropped the connection before answering: worth one more try on a fresh one."""


class Tokenizer:
    """The model's tokenizer, from its local directory (loaded as every runtime loads it: a SentencePiece
    model as the slow tokenizer), for counting the answer so far and rendering a chat for a resume."""

    def __init__(self, path: str | Path):
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise ValueError("tokenizer: needs the transformers package in the gateway's environment") from None
        p = Path(path)
        if not p.is_dir():
            raise ValueError(f"tokenizer: {p} is not a directory holding the model's tokenizer files")
        try:
            self.tok = AutoTokenizer.from_pretrained(str(p), use_fast=not (p / "tokenizer.model").exists())
        except Exception as exc:  # noqa: BLE001 - whatever transformers says, named
            raise ValueError(f"tokenizer: {p}: {exc}") from None

    def count(self, text: str) -> int:
        """Tokens of ``text`` as an engine's /v1/completions reads a prompt (special tokens added)."""
        return len(self.tok(text)["input_ids"])

    def chat_prompt(self, request: GenerationRequest) -> str:
        """The chat rendered as the engine's chat endpoint renders it, as text that /v1/completions reads
        back to the same token ids; ValueError when no such text exists."""
        if not getattr(self.tok, "chat_template", None):
            raise ValueError("the model's tokenizer has no chat template")
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        got = self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        want = list(got["input_ids"] if isinstance(got, Mapping) else got)     # transformers 5 answers a BatchEncoding
        text = self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        bos = self.tok.bos_token or ""
        for candidate in (text, text[len(bos):] if bos and text.startswith(bos) else None):
            if candidate is not None and list(self.tok(candidate)["input_ids"]) == want:
                return candidate
        raise ValueError("the rendered chat does not read back as the chat's tokens through /v1/completions")


@dataclass(frozen=True)
class _Call:
    path: str
    body: dict[str, Any]
    resumed: int = 0              # tokens of the answer the client already has (a resume)
    prompt_tokens: int | None = None      # the original prompt's, as the engine counts them (a resume)


class OpenAIEngine:
    name = "openai"

    def __init__(self, engines: EnginesFile, *, timeout_s: float = 600.0, tokenizer: Tokenizer | None = None,
                 expected_step_s: float = EXPECTED_STEP_S, first_token_timeout_s: float = FIRST_TOKEN_TIMEOUT_S):
        self.engines = engines
        self.tokenizer = tokenizer
        self.expected_step_s, self.first_token_timeout_s = expected_step_s, first_token_timeout_s
        self._by_servers = {e.servers: e for e in engines.engines}
        self._slots = {e.servers: asyncio.Semaphore(e.capacity) for e in engines.engines}
        self.timeout_s = timeout_s      # the longest any one read of an answer may wait, whatever the deadlines
        self._pool: UpstreamPool | None = None

    def _upstream(self) -> UpstreamPool:
        if self._pool is None:          # made on first use: inside the loop that serves
            self._pool = UpstreamPool(connect_timeout_s=CONNECT_TIMEOUT_S)
        return self._pool

    def entry(self, hops: Sequence[HopDoc]) -> EngineEntry:
        key = tuple(h.server for h in hops)
        got = self._by_servers.get(key)
        if got is None:
            raise EngineError(f"no engine in the engines file for the chain {' -> '.join(key)} "
                              f"(re-export the adopted plan with --engines-file)", server=key[0] if key else None)
        return got

    @staticmethod
    def body(request: GenerationRequest, entry: EngineEntry) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": entry.model or request.model, "stream": True,
                                "stream_options": {"include_usage": True}, "max_tokens": request.max_tokens,
                                "temperature": request.temperature, "top_p": request.top_p}
        if request.stop:
            body["stop"] = list(request.stop)
        if request.seed is not None:
            body["seed"] = request.seed
        if request.kind == "chat":
            body["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
            return "/chat/completions", body
        body["prompt"] = request.prompt
        return "/completions", body

    # -- resuming after a fail-over -------------------------------------------------------------
    def resume_refusal(self, request: GenerationRequest, resume: Resume) -> str | None:
        if self.tokenizer is None:
            return ("this model's openai engine has no tokenizer (the model entry's 'tokenizer'), so the answer "
                    "so far cannot be counted and continued exactly")
        if REPLACEMENT in resume.text:
            return "the answer so far holds a partial character (U+FFFD), which no engine reads back exactly"
        if request.kind == "chat":
            try:
                self.tokenizer.chat_prompt(request)
            except ValueError as exc:
                return str(exc)
        return None

    def _resume_call(self, request: GenerationRequest, entry: EngineEntry) -> _Call:
        """The continuation: /v1/completions with the prompt the chain saw and the answer so far."""
        tok, resume = self.tokenizer, request.resume
        why = self.resume_refusal(request, resume)
        if why is not None or tok is None:
            raise EngineError(f"cannot resume the answer: {why}")
        prompt = tok.chat_prompt(request) if request.kind == "chat" else request.prompt
        prompt_tokens = tok.count(prompt)
        resumed = tok.count(prompt + resume.text) - prompt_tokens
        _, body = self.body(request, entry)
        body.pop("messages", None)
        body["prompt"] = prompt + resume.text
        body["max_tokens"] = request.max_tokens - resumed
        return _Call("/completions", body, resumed, prompt_tokens)

    # -- one request ----------------------------------------------------------------------------
    async def stream(self, request: GenerationRequest, hops: Sequence[HopDoc]) -> AsyncIterator[Delta]:
        entry = self.entry(hops)
        if request.resume is None:
            call = _Call(*self.body(request, entry))
        else:
            call = await asyncio.to_thread(self._resume_call, request, entry)
            if call.body["max_tokens"] < 1:          # every token was out; only the end was lost
                yield Delta(finish_reason="length", prompt_tokens=call.prompt_tokens, completion_tokens=call.resumed)
                return
        payload = json.dumps(call.body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        async with self._slots[entry.servers]:
            try:
                async for d in self._attempt(entry, call, payload, fresh=False):
                    yield d
                return
            except _Retry:
                pass
            try:                # a new connection, not the pool's
                async for d in self._attempt(entry, call, payload, fresh=True):
                    yield d
            except _Retry as exc:
                raise HopError(f"engine {entry.url} dropped the connection twice: {exc}",
                               server=entry.servers[0]) from None

    async def _attempt(self, entry: EngineEntry, call: _Call, payload: bytes, *, fresh: bool
                       ) -> AsyncIterator[Delta]:
        chat = "messages" in call.body
        started = False
        finish = None
        usage: dict[str, Any] = {}
        loop = asyncio.get_running_loop()
        wait = min(self.first_token_timeout_s, self.timeout_s)      # the deadline for the next chunk
        gaps, n_gaps, last = 0.0, 0, None
        resp: UpstreamResponse | None = None
        ended = False             # [DONE] was read
        lines: AsyncIterator[str] | None = None
        try:
            try:
                async with asyncio.timeout_at(loop.time() + wait) as deadline:
                    resp = await self._upstream().post(entry.url + call.path, payload, fresh=fresh)
                    if resp.status >= 400:
                        text = (await resp.read(4096)).decode(errors="replace")[:500]
                        raise EngineError(f"engine {entry.url} answered {resp.status}: {text}", server=entry.servers[0])
                    lines = resp.lines()
                    while True:
                        deadline.reschedule(loop.time() + wait)
                        try:
                            line = await lines.__anext__()
                        except StopAsyncIteration:
                            break
                        deadline.reschedule(None)       # the time the consumer takes is not the engine's
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            ended = True
                            break
                        try:
                            obj = json.loads(data)
                        except ValueError:
                            raise EngineError(f"engine {entry.url} sent a malformed event: {data[:200]!r}",
                                              server=entry.servers[0]) from None
                        if "error" in obj:
                            raise EngineError(f"engine {entry.url}: {obj['error']}", server=entry.servers[0])
                        if obj.get("usage"):
                            usage = obj["usage"]
                        for choice in obj.get("choices") or []:
                            text = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
                            if text:
                                now = loop.time()
                                if last is not None:
                                    gaps, n_gaps = gaps + now - last, n_gaps + 1
                                last, started = now, True
                                wait = min(step_deadline(max(self.expected_step_s, gaps / n_gaps if n_gaps else 0.0)),
                                           self.timeout_s)
                                yield Delta(text=text)
                            if choice.get("finish_reason"):
                                finish = choice["finish_reason"]
            except TimeoutError:
                raise HopError(f"engine {entry.url} sent nothing for {wait:.1f} s "
                               f"({'mid-answer' if started else 'before the first token'}): taken for hung",
                               server=entry.servers[0]) from None
            except UpstreamError as exc:
                if finish in ("stop", "length"):
                    pass            # cut after the answer's end: nothing is missing but the usage chunk
                elif isinstance(exc, UpstreamProtocolError) and not started:
                    raise _Retry(str(exc)) from None
                else:
                    raise HopError(f"engine {entry.url} {'dropped the stream' if started else 'failed'}: "
                                   f"{type(exc).__name__}: {exc}", server=entry.servers[0]) from None
            if finish not in ("stop", "length"):
                raise EngineError(f"engine {entry.url} ended the answer with finish_reason {finish!r}",
                                  server=entry.servers[0])
            prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
            if call.resumed:      # the engine counted the answer so far as prompt: the client's counts are the whole's
                prompt = None if prompt is None else prompt - call.resumed
                completion = None if completion is None else completion + call.resumed
            yield Delta(finish_reason=finish, prompt_tokens=prompt, completion_tokens=completion)
            if ended and lines is not None:
                await self._drain(lines)        # the answer is out; the rest of it frees the connection
        finally:
            if resp is not None:
                resp.close()        # back to the pool when it was read to its end, else closed

    @staticmethod
    async def _drain(lines: AsyncIterator[str]) -> None:
        """After ``[DONE]``: read the answer to its end (its last chunk is usually in the same packet), so that
        the connection goes back to the pool for the next request instead of being closed; an engine that
        keeps the stream open past ``DRAIN_S`` only loses its connection."""
        try:
            async with asyncio.timeout(DRAIN_S):
                async for _ in lines:
                    pass
        except (TimeoutError, UpstreamError):
            pass

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None


FIELDS = {"name", "cluster", "engine", "engines_file", "tokenizer", "expected_step_s", "first_token_timeout_s"}


def _seconds(spec: Mapping[str, Any], field: str, default: float) -> float:
    v = spec.get(field, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 3600:
        raise ValueError(f"{field}: seconds in (0, 3600] expected, got {v!r}")
    return float(v)


def from_spec(spec: Mapping[str, Any], *, base_dir: Path | None = None) -> OpenAIEngine:
    """A model entry of the gateway's configuration:

        {"engine": "openai", "engines_file": "engines.json", "tokenizer": "/models/tiny",
         "expected_step_s": 0.05, "first_token_timeout_s": 30}

    ``tokenizer`` (optional) the model's local directory: with it, an answer cut by a failed chain
    resumes on another; without, a fail-over happens only before the first token reached the client."""
    unknown = sorted(set(spec) - FIELDS)
    if unknown:
        raise ValueError(f"{unknown[0]}: not a field of an 'openai' engine (it takes {', '.join(sorted(FIELDS - {'name', 'cluster', 'engine'}))})")
    path = spec.get("engines_file")
    if not isinstance(path, str) or not path:
        raise ValueError("engines_file: required for an 'openai' engine (python -m solvers export --engines-file)")
    p = Path(path)
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    tokenizer = None
    if spec.get("tokenizer") is not None:
        t = spec["tokenizer"]
        if not isinstance(t, str) or not t:
            raise ValueError(f"tokenizer: a directory is required, got {t!r}")
        tp = Path(t).expanduser()
        tokenizer = Tokenizer(tp if tp.is_absolute() or base_dir is None else base_dir / tp)
    return OpenAIEngine(load_engines_file(p), tokenizer=tokenizer,
                        expected_step_s=_seconds(spec, "expected_step_s", EXPECTED_STEP_S),
                        first_token_timeout_s=_seconds(spec, "first_token_timeout_s", FIRST_TOKEN_TIMEOUT_S))
