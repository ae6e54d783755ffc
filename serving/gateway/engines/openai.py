"""The ``openai`` engine: each chain is one OpenAI-compatible server; the gateway forwards and streams back.

vLLM, SGLang, llama.cpp's server, exo and Parallax build one engine per pipeline, so a chain of
the plan is one URL.  The engines file (written by ``python -m solvers export --runtime ...
--engines-file FILE``) maps each chain, keyed by its servers in order, to that URL and the
chain's capacity; keyed by servers, an entry still matches after a plan switch keeps the chain.

Upstream requests always stream (the first token is forwarded as it comes).  A reused idle
connection that the server dropped ("Server disconnected", seen with llama.cpp's server) is
retried once on a fresh connection, before any of the answer was read.  Each engine gets at most
its chain's capacity of requests at a time (the dispatcher already grants no more; this keeps it
true if several gateways or a stale plan disagree).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Mapping, Sequence

import httpx

from solvers.plan_format import HopDoc

from ..engine import Delta, EngineError, GenerationRequest

__all__ = ["ENGINES_FORMAT", "EngineEntry", "EnginesFile", "OpenAIEngine", "from_spec", "load_engines_file"]

ENGINES_FORMAT = "chainplan-engines/1"


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


class OpenAIEngine:
    name = "openai"

    def __init__(self, engines: EnginesFile, *, timeout_s: float = 600.0):
        self.engines = engines
        self._by_servers = {e.servers: e for e in engines.engines}
        self._slots = {e.servers: asyncio.Semaphore(e.capacity) for e in engines.engines}
        self._timeout = httpx.Timeout(timeout_s, connect=10.0)
        self._http: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:          # made on first use: inside the loop that serves
            self._http = httpx.AsyncClient(timeout=self._timeout, limits=httpx.Limits(max_connections=None))
        return self._http

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

    async def stream(self, request: GenerationRequest, hops: Sequence[HopDoc]) -> AsyncIterator[Delta]:
        entry = self.entry(hops)
        path, body = self.body(request, entry)
        async with self._slots[entry.servers]:
            try:
                async for d in self._attempt(self._client(), entry, path, body):
                    yield d
                return
            except _Retry:
                pass
            async with httpx.AsyncClient(timeout=self._timeout) as fresh:      # a new connection, not the pool's
                try:
                    async for d in self._attempt(fresh, entry, path, body):
                        yield d
                except _Retry as exc:
                    raise EngineError(f"engine {entry.url} dropped the connection twice: {exc}",
                                      server=entry.servers[0]) from None

    async def _attempt(self, http: httpx.AsyncClient, entry: EngineEntry, path: str,
                       body: dict[str, Any]) -> AsyncIterator[Delta]:
        chat = "messages" in body
        started = False
        finish = None
        usage: dict[str, Any] = {}
        try:
            async with http.stream("POST", entry.url + path, json=body) as resp:
                if resp.status_code >= 400:
                    text = (await resp.aread()).decode(errors="replace")[:500]
                    raise EngineError(f"engine {entry.url} answered {resp.status_code}: {text}",
                                      server=entry.servers[0])
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
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
                            started = True
                            yield Delta(text=text)
                        if choice.get("finish_reason"):
                            finish = choice["finish_reason"]
        except httpx.RemoteProtocolError as exc:
            if not started:
                raise _Retry(str(exc)) from None
            raise EngineError(f"engine {entry.url} dropped the stream: {exc}", server=entry.servers[0]) from None
        except httpx.HTTPError as exc:
            raise EngineError(f"engine {entry.url}: {type(exc).__name__}: {exc}", server=entry.servers[0]) from None
        if finish not in ("stop", "length"):
            raise EngineError(f"engine {entry.url} ended the answer with finish_reason {finish!r}",
                              server=entry.servers[0])
        yield Delta(finish_reason=finish, prompt_tokens=usage.get("prompt_tokens"),
                    completion_tokens=usage.get("completion_tokens"))

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None


def from_spec(spec: Mapping[str, Any], *, base_dir: Path | None = None) -> OpenAIEngine:
    path = spec.get("engines_file")
    if not isinstance(path, str) or not path:
        raise ValueError("engines_file: required for an 'openai' engine (python -m solvers export --engines-file)")
    p = Path(path)
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    return OpenAIEngine(load_engines_file(p))
