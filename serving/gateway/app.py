"""The gateway's ASGI app (Starlette): the OpenAI API in front of the dispatcher and the engines.

    POST /v1/chat/completions   POST /v1/completions   GET /v1/models   GET /v1/models/{model}
    GET /v1/metrics (Prometheus text; also /metrics, which only the standalone gateway receives)

A request: key (401) -> JSON and parameters (400/413) -> model of the key's cluster (404) ->
a lease from the dispatcher (waits up to ``queue_wait_s``; 429 with Retry-After when every slot
stays busy, 503 when there is no adopted plan or the dispatcher is away) -> the engine runs it on
exactly the granted chain -> the lease is released when the answer ends, the client goes away
(the engine's task is cancelled at once: its session closes) or anything fails.

When a hop fails mid-answer (the engine raises ``HopError``), the request fails over
(``serving.dispatch.failover.astream``): the failed server is reported with the release (masked at
once), a new lease is taken, and the engine continues the answer on the new chain after what the
client already has, so the client sees one uninterrupted answer; when no chain can finish it, one
503 with Retry-After (an ``error`` event once the stream has started).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from dataclasses import dataclass, field, replace
from typing import Any, AsyncIterator, Awaitable, Callable, Sequence, TypeVar

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from serving.dispatch.failover import MAX_ATTEMPTS, MAX_FAILOVER_S, Attempt, FailoverExhausted, Failure, astream
from serving.dispatch.protocol import DispatchError, NoAdoptedPlan, NoFreeChain
from solvers.plan_format import route_text

from .engine import Delta, Engine, EngineError, GenerationRequest, RequestTooLong, Resume
from .errors import OpenAIError
from .keys import KeySource
from .leases import LeaseSource
from .metrics import CONTENT_TYPE_LATEST, GatewayMetrics, RequestObservation
from .params import Limits, Parsed, parse_chat, parse_completion

__all__ = ["GatewayConfig", "ServedModel", "create_app", "is_gateway_path"]

log = logging.getLogger("serving.gateway")
T = TypeVar("T")
PREFIX = "/v1/"
OBS = "chainplan.gateway.observation"      # the scope key of a generation request's RequestObservation
_ENDPOINTS = {"/v1/chat/completions": "chat", "/v1/completions": "completions", "/v1/models": "models"}


@dataclass(frozen=True)
class ServedModel:
    """A model name the gateway answers to: requests for it go to ``cluster``'s plan, run by ``engine``."""

    name: str
    cluster: int
    engine: Engine


@dataclass
class GatewayConfig:
    models: Sequence[ServedModel]
    keys: KeySource
    leases: LeaseSource
    limits: Limits = field(default_factory=Limits)
    queue_wait_s: float = 30.0          # a request's deadline for a free slot
    max_body_bytes: int = 1 << 20
    failover_attempts: int = MAX_ATTEMPTS       # leases per request: the first and the fail-overs
    failover_window_s: float = MAX_FAILOVER_S   # from a request's first hop failure, the longest it waits for a new lease
    metrics_token: str | None = None    # when set, GET /v1/metrics needs 'Authorization: Bearer <it>'
    metrics_max_chains: int = 32        # distinct chains per model in the metrics' labels (then "other")


def is_gateway_path(path: str) -> bool:
    return path.startswith(PREFIX) or path == PREFIX.rstrip("/")


def _endpoint(path: str) -> str:
    """A bounded label for the path (an error's); unknown URLs are one value, never the path itself."""
    got = _ENDPOINTS.get(path)
    if got is not None:
        return got
    return "models" if path.startswith("/v1/models/") else "other"


# -- helpers -----------------------------------------------------------------------------------

def _error_response(exc: OpenAIError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())


def _dispatch_error(exc: Exception, cluster: int) -> OpenAIError:
    """The dispatcher's refusals in OpenAI's shape."""
    if isinstance(exc, NoAdoptedPlan):
        return OpenAIError(503, f"cluster {cluster} has no adopted plan to serve from: adopt a plan first",
                           code="no_adopted_plan", retry_after_s=5)
    if isinstance(exc, NoFreeChain):
        return OpenAIError(429, f"every chain's slots stayed busy past this request's deadline ({exc.detail})",
                           code="no_free_chain", retry_after_s=exc.retry_after_s or 1)
    detail = exc.detail if isinstance(exc, DispatchError) else str(exc) or type(exc).__name__
    return OpenAIError(503, f"the dispatcher could not be asked for a chain: {detail}",
                       code="dispatcher_unavailable", retry_after_s=1)


def _engine_error(exc: EngineError, parsed: Parsed, progress: "_Progress") -> OpenAIError:
    """An engine's failure in OpenAI's shape: a request too long for the runtime is the request's
    fault (400 naming what to shorten); anything else is the engine's (502)."""
    if isinstance(exc, RequestTooLong):
        param = parsed.prompt_param if exc.param == "prompt" else parsed.max_tokens_param
        return OpenAIError(400, f"{exc}: shorten {param}", param=param, code="context_length_exceeded")
    why = f" (no fail-over: {progress.refusal})" if progress.refusal else ""
    return OpenAIError(502, f"the engine failed on chain {progress.chain}: {exc}{why}", code="engine_error")


def _failover_error(exc: FailoverExhausted) -> OpenAIError:
    return OpenAIError(503, f"no chain could answer: {exc.detail}", code="no_chain_available",
                       retry_after_s=exc.retry_after_s)


class _Progress:
    """What the client has received of the answer so far: a fail-over resumes after it."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.tokens: list[int] = []
        self.pieces = 0
        self.chain: int | None = None       # the chain of the attempt running now
        self.route = ""                     # the first lease's hops, "server:start-end|..."
        self.started = False                # an attempt ran (so an error is no longer the dispatcher's refusal)
        self.refusal: str | None = None     # why the engine could not resume, when it could not
        self.waited_s = 0.0                 # the first lease's time in the dispatcher's queue

    def add(self, d: Delta) -> None:
        if d.text:
            self.text.append(d.text)
            self.pieces += 1
        if d.tokens:
            self.tokens.extend(d.tokens)

    def resume(self) -> Resume | None:
        if not self.pieces and not self.tokens:
            return None              # nothing reached the client: the next chain simply runs the request
        return Resume("".join(self.text), tuple(self.tokens), self.pieces)


async def _first(deltas: AsyncIterator[Delta]) -> Delta | None:
    async for d in deltas:
        return d
    return None


async def _then(first: Delta | None, rest: AsyncIterator[Delta]) -> AsyncIterator[Delta]:
    """``first``, then the rest of the engine's answer (closing this does not close ``rest``)."""
    if first is None:
        return
    yield first
    async for d in rest:
        yield d


async def _observed(deltas: AsyncIterator[Delta], obs: RequestObservation) -> AsyncIterator[Delta]:
    """The engine's answer, timing each piece of text; closing this closes the engine's stream."""
    try:
        async for d in deltas:
            if d.text:
                obs.piece()
            yield d
    finally:
        await deltas.aclose()


async def _disconnected(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _unless_gone(work: Awaitable[T], receive) -> tuple[bool, T | None]:
    """Run ``work`` unless the client disconnects first: then cancel it (within one loop turn)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        watcher.cancel()
        raise
    if task in done:
        watcher.cancel()
        return False, task.result()
    task.cancel()
    try:
        await task
    except BaseException:  # noqa: BLE001 - nobody is left to tell
        pass
    return True, None


def _granted(response: Response, progress: "_Progress") -> Response:
    """Which chain of the plan served the answer (the one running when the answer started), its hops, and how
    long its first lease queued (headers a client may read, as the PETALS testbed does to compare its
    measurements with the prediction)."""
    response.headers["x-chainplan-chain"] = str(progress.chain)
    # the index names a chain of the plan that granted it; after a plan switch only the hops say which servers
    response.headers["x-chainplan-route"] = progress.route
    response.headers["x-chainplan-queue-wait-s"] = f"{progress.waited_s:.6f}"
    return response


def _sse(obj: Any) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _usage(final: Delta | None, counted: int) -> dict[str, int]:
    prompt = (final.prompt_tokens if final else None) or 0
    completion = final.completion_tokens if final and final.completion_tokens is not None else counted
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class _Answer:
    """The OpenAI objects of one answer (chat or completion), whole or as stream chunks."""

    def __init__(self, req: GenerationRequest, model: str):
        self.chat = req.kind == "chat"
        self.id = ("chatcmpl-" if self.chat else "cmpl-") + secrets.token_hex(12)
        self.created = int(time.time())
        self.model = model

    def _head(self, chunk: bool) -> dict[str, Any]:
        obj = ("chat.completion.chunk" if chunk else "chat.completion") if self.chat else "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model}

    def whole(self, text: str, finish: str | None, usage: dict[str, int]) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish or "stop", "logprobs": None}
        if self.chat:
            choice["message"] = {"role": "assistant", "content": text}
        else:
            choice["text"] = text
        return {**self._head(False), "choices": [choice], "usage": usage}

    def chunk(self, text: str | None, finish: str | None, *, first: bool = False,
              include_usage: bool = False) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish, "logprobs": None}
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant"} if first else {}
            if text is not None:
                delta["content"] = text
            choice["delta"] = delta
        else:
            choice["text"] = text or ""
        out = {**self._head(True), "choices": [choice]}
        if include_usage:
            out["usage"] = None
        return out

    def usage_chunk(self, usage: dict[str, int]) -> dict[str, Any]:
        return {**self._head(True), "choices": [], "usage": usage}


class _Last(bytes):
    """The last bytes of an event stream: nothing follows them."""


class _ThenClose(JSONResponse):
    """A whole answer; ``deltas`` (the engine's finished stream: its lease) is closed once it was sent, or the
    sending failed."""

    def __init__(self, content: Any, deltas: AsyncIterator[Delta]):
        super().__init__(content)
        self.deltas = deltas

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.deltas.aclose()


class _EventStream(Response):
    """Server-sent events; the producer is cancelled as soon as the client disconnects, then ``on_close``
    runs with how the stream ended: "ok" (sent to the end), "client_gone" or "error" (it raised)."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[bytes], on_close: Callable[[str], Awaitable[None]]):
        super().__init__(None, status_code=200, headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
                         media_type=self.media_type)
        self.events, self.on_close = events, on_close
        # a stream has no length: Response's content-length (of its empty body) would cut it off
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]

    async def __call__(self, scope, receive, send) -> None:
        async def pump() -> None:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async for chunk in self.events:
                last = type(chunk) is _Last        # the stream's end leaves with its last events, in one write
                await send({"type": "http.response.body", "body": chunk, "more_body": not last})
                if last:
                    return
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        outcome = "error"
        try:
            gone, _ = await _unless_gone(pump(), receive)
            outcome = "client_gone" if gone else "ok"
        except OSError:      # the client went away while we were writing
            outcome = "client_gone"
        finally:
            await self.events.aclose()
            await self.on_close(outcome)


# -- the app -------------------------------------------------------------------------------------

class Gateway:
    def __init__(self, config: GatewayConfig):
        self.config = config
        self.failovers_total = 0        # attempts resumed on a new chain after a hop failed (for metrics)
        self.metrics = GatewayMetrics(max_chains=config.metrics_max_chains)
        self.by_cluster: dict[int, dict[str, ServedModel]] = {}
        for m in config.models:
            self.by_cluster.setdefault(m.cluster, {})[m.name] = m

    async def _cluster(self, request: Request) -> int:
        parts = request.headers.get("authorization", "").split()
        if len(parts) != 2 or parts[0].lower() != "bearer":
            raise OpenAIError(401, "an API key is required: 'Authorization: Bearer <gateway key>' (a key of one "
                                   "cluster; docs/gateway.md)",
                              code="missing_api_key")
        try:
            cluster = await self.config.keys.cluster_of(parts[1])
        except Exception as exc:  # noqa: BLE001 - the store is away: say so, never a traceback
            raise OpenAIError(503, f"the key store could not be reached: {exc}", code="key_store_unavailable",
                              retry_after_s=1) from None
        if cluster is None:
            raise OpenAIError(401, "incorrect API key provided (unknown or revoked)", code="invalid_api_key")
        return cluster

    async def _json(self, request: Request) -> Any:
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise OpenAIError(413, f"the request body is {declared} bytes; at most {limit} are accepted",
                              code="request_too_large")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise OpenAIError(413, f"the request body is over {limit} bytes", code="request_too_large")
            chunks.append(chunk)
        try:
            return json.loads(b"".join(chunks))
        except (ValueError, UnicodeDecodeError) as exc:
            raise OpenAIError(400, f"the request body is not valid JSON: {exc}", code="invalid_json") from None

    def _model(self, cluster: int, name: str) -> ServedModel:
        served = self.by_cluster.get(cluster, {})
        got = served.get(name)
        if got is None:
            known = ", ".join(sorted(served)) or "none"
            raise OpenAIError(404, f"the model {name!r} does not exist for this key (models: {known})",
                              param="model", code="model_not_found")
        return got

    # -- endpoints --------------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        """Liveness for orchestrators (no key: it says nothing about any cluster)."""
        return JSONResponse({"status": "ok"})

    async def models(self, request: Request) -> Response:
        cluster = await self._cluster(request)
        return JSONResponse({"object": "list", "data": [self._model_obj(m) for m in self.by_cluster.get(cluster, {}).values()]})

    async def model(self, request: Request) -> Response:
        cluster = await self._cluster(request)
        return JSONResponse(self._model_obj(self._model(cluster, request.path_params["model"])))

    async def metrics_text(self, request: Request) -> Response:
        token = self.config.metrics_token
        if token and not secrets.compare_digest(request.headers.get("authorization", "").encode(),
                                                f"Bearer {token}".encode()):
            raise OpenAIError(401, "metrics need 'Authorization: Bearer <metrics token>' (CHAINPLAN_METRICS_TOKEN)",
                              code="invalid_metrics_token")
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @staticmethod
    def _model_obj(m: ServedModel) -> dict[str, Any]:
        return {"id": m.name, "object": "model", "created": 0, "owned_by": f"chainplan cluster {m.cluster}"}

    async def chat(self, request: Request) -> Response:
        return await self._serve(request, parse_chat, "chat")

    async def completions(self, request: Request) -> Response:
        return await self._serve(request, parse_completion, "completions")

    async def _serve(self, request: Request, parse: Callable[[Any, Limits], Parsed], endpoint: str) -> Response:
        # every way this request ends is recorded on obs: here, or by the error handlers (which find it in the scope)
        obs = request.scope[OBS] = RequestObservation(self.metrics, endpoint)
        cluster = await self._cluster(request)
        parsed = parse(await self._json(request), self.config.limits)
        served = self._model(cluster, parsed.request.model)
        obs.model(served.cluster, served.name)
        progress = _Progress()
        try:
            client = self.config.leases.client(served.cluster)
        except Exception as exc:  # noqa: BLE001 - no way to lease (no dispatch token): 503
            raise _dispatch_error(exc, served.cluster) from None
        deltas = _observed(self._answer(served, parsed.request, client, progress, obs), obs)

        # The first piece is awaited before any response starts: a refusal (no free slot, a prompt too
        # long for the servers, no chain left after fail-overs) is still an HTTP error, not an error
        # event inside a 200 stream.
        try:
            gone, first = await _unless_gone(_first(deltas), request.receive)
        except BaseException as exc:
            await deltas.aclose()
            raise self._error(exc, parsed, progress, served.cluster) from None
        if gone:
            obs.end("client_gone")
            await deltas.aclose()
            return Response(status_code=499)
        answer = _Answer(parsed.request, served.name)
        if parsed.stream:
            async def stream_closed(outcome: str) -> None:
                obs.end(outcome)         # no-op when the answer was sent to its end (recorded with its usage)
                await deltas.aclose()    # the engine's session closed, then the lease released

            return _granted(_EventStream(self._events(answer, first, deltas, parsed.include_usage, parsed,
                                                      progress, obs), stream_closed), progress)
        done = False
        try:
            gone, got = await _unless_gone(self._collect(_then(first, deltas)), request.receive)
            if gone:
                obs.end("client_gone")
            else:
                text, final, counted = got
                usage = _usage(final, counted)
                obs.end("ok", usage["prompt_tokens"], usage["completion_tokens"])
                done = True
        except BaseException as exc:
            raise self._error(exc, parsed, progress, served.cluster) from None
        finally:
            if not done:
                await deltas.aclose()
        if gone:
            return Response(status_code=499)
        # the whole answer is in hand: the lease goes back once it is sent (or the sending failed)
        return _granted(_ThenClose(answer.whole(text, final.finish_reason if final else None, usage), deltas),
                        progress)

    def _answer(self, served: ServedModel, req: GenerationRequest, client: Any,
                progress: _Progress, obs: RequestObservation) -> AsyncIterator[Delta]:
        """The answer, over as many leases as fail-overs need; every delta the caller takes is noted in
        ``progress`` first, so a resumed attempt starts exactly after what the client was given."""
        engine = served.engine

        def attempt(a: Attempt) -> AsyncIterator[Delta]:
            progress.started, progress.chain = True, a.lease.chain
            servers = tuple(h.server for h in a.lease.servers)
            if not a.resumed:
                progress.waited_s = float(a.lease.waited_s)      # the dispatcher's queue time (the header)
                progress.route = route_text(a.lease.servers)
                # the metric: the whole time to get the lease, round trip to the dispatcher included
                obs.granted(served.cluster, served.name, a.lease.chain, servers, time.perf_counter() - asked)
            else:
                self.failovers_total += 1
                obs.failed_over(served.cluster, served.name, a.lease.chain, servers)
            resume = progress.resume()
            return engine.stream(req if resume is None else replace(req, resume=resume), a.lease.servers)

        def can_resume(state: Any, failure: Failure) -> bool:
            resume = progress.resume()
            progress.refusal = None if resume is None else engine.resume_refusal(req, resume)
            return progress.refusal is None

        asked = time.perf_counter()

        async def noted() -> AsyncIterator[Delta]:
            async for d in astream(client, attempt, state=progress, wait_s=self.config.queue_wait_s,
                                   max_attempts=self.config.failover_attempts,
                                   max_failover_s=self.config.failover_window_s, can_resume=can_resume):
                progress.add(d)
                yield d
        return noted()

    @staticmethod
    def _error(exc: BaseException, parsed: Parsed, progress: _Progress, cluster: int) -> BaseException:
        """What a failure before the answer was complete becomes: the dispatcher's refusals (429, 503),
        the engine's (400, 502), no chain left after fail-overs (503); anything else as it was."""
        if isinstance(exc, OpenAIError):
            return exc
        if isinstance(exc, FailoverExhausted):
            return _failover_error(exc)
        if isinstance(exc, EngineError):
            return _engine_error(exc, parsed, progress)
        if isinstance(exc, Exception) and (isinstance(exc, DispatchError) or not progress.started):
            return _dispatch_error(exc, cluster)      # every failure to lease is a 429/503
        return exc

    @staticmethod
    async def _collect(deltas: AsyncIterator[Delta]) -> tuple[str, Delta | None, int]:
        parts, final, counted = [], None, 0
        async for d in deltas:
            if d.text:
                parts.append(d.text)
                counted += 1
            if d.finish_reason is not None:
                final = d
                break           # the engine's last piece: what follows is only the lease's release
        return "".join(parts), final, counted

    @staticmethod
    async def _events(answer: _Answer, first: Delta | None, deltas: AsyncIterator[Delta], include_usage: bool,
                      parsed: Parsed, progress: _Progress, obs: RequestObservation) -> AsyncIterator[bytes]:
        """The answer's events, each sent as soon as its piece is in hand; events that are ready together (the
        chat's role chunk and the first piece; the finish chunk, usage, ``[DONE]`` and the stream's end) leave
        in one write.  After the engine's last piece nothing more is awaited: ``deltas`` is closed (the lease
        released) by the stream's ``on_close``, once the answer was sent or the client went away."""
        final, counted = None, 0
        out = [_sse(answer.chunk("", None, first=True, include_usage=include_usage))] if answer.chat else []
        try:
            d = first
            while d is not None:
                if d.text:
                    counted += 1
                    out.append(_sse(answer.chunk(d.text, None, include_usage=include_usage)))
                if d.finish_reason is not None:
                    final = d
                    break
                if out:
                    yield out[0] if len(out) == 1 else b"".join(out)
                    out = []
                d = await anext(deltas, None)
            out.append(_sse(answer.chunk(None, final.finish_reason if final else "stop", include_usage=include_usage)))
            usage = _usage(final, counted)
            if include_usage:
                out.append(_sse(answer.usage_chunk(usage)))
            obs.end("ok", usage["prompt_tokens"], usage["completion_tokens"])
            out.append(b"data: [DONE]\n\n")
            yield _Last(b"".join(out))
        except (EngineError, FailoverExhausted) as exc:       # mid-stream: the SDKs raise on an "error" event
            err = _failover_error(exc) if isinstance(exc, FailoverExhausted) else _engine_error(exc, parsed, progress)
            obs.error(err.status, err.type, err.code)
            out.append(_sse(err.body()))
            yield _Last(b"".join(out))


def create_app(config: GatewayConfig, *, startup: Sequence[Callable[[], Awaitable[Any]]] = ()) -> Starlette:
    """The gateway as an ASGI app; ``startup`` runs in its lifespan (for instance putting a plan in a memory store)."""
    gw = Gateway(config)

    def counted(request: Request, exc: OpenAIError) -> Response:
        obs = request.scope.get(OBS)
        if obs is not None:
            obs.fail(exc.status, exc.type, exc.code)
        else:
            gw.metrics.count_error(("", "", "", ""), _endpoint(request.url.path), exc.status, exc.type, exc.code)
        return _error_response(exc)

    async def openai_error(request: Request, exc: Exception) -> Response:
        return counted(request, exc)  # type: ignore[arg-type]

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        msg = f"no such endpoint: {request.method} {request.url.path}" if status in (404, 405) else str(exc)
        return counted(request, OpenAIError(status, msg, code="unknown_url" if status == 404 else "method_not_allowed"))

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("gateway request failed")
        return counted(request, OpenAIError(500, "the gateway failed on this request; see its log", code="internal_error"))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for fn in startup:
            await fn()
        yield
        await config.leases.aclose()
        for m in config.models:
            await m.engine.aclose()

    routes = [Route("/v1/chat/completions", gw.chat, methods=["POST"]),
              Route("/v1/completions", gw.completions, methods=["POST"]),
              Route("/v1/models", gw.models, methods=["GET"]),
              Route("/v1/health", gw.health, methods=["GET"]),
              Route("/v1/metrics", gw.metrics_text, methods=["GET"]),
              Route("/metrics", gw.metrics_text, methods=["GET"]),
              Route("/v1/models/{model:path}", gw.model, methods=["GET"])]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={OpenAIError: openai_error, HTTPException: http_error, Exception: server_error})
    app.state.gateway = gw
    return app
