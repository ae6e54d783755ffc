"""What the gateway asks of an engine: run one request on exactly the granted chain, streaming text.

The gateway (``serving.gateway``) owns the OpenAI API, keys, the dispatcher lease and the
response shape; an engine owns only the runtime: given the lease's chain (its hops, in order) and a
normalised request, it yields the answer as it is produced.  Two kinds to start with:

- ``petals``: the chain's spans run with PETALS' client (KV sessions over exactly the granted
  servers and block ranges), tokenizer and chat template from the model's local directory;
- ``openai``: one OpenAI-compatible engine per chain (vLLM, SGLang, llama.cpp's server, exo,
  Parallax), keyed by the chain's servers in the engines file that ``python -m solvers export`` writes.

Cancellation is the contract for a client that goes away: the gateway cancels the task iterating
``stream()``, and the engine must close its runtime session (PETALS inference session, HTTP stream)
in its ``finally``/``aclose`` within a second.

Fail-over (docs/gateway.md): when a hop of the chain fails (a connection refused or reset, no answer
within the step deadline) the engine raises ``HopError`` naming that hop's server; the gateway reports
it to the dispatcher, takes a new lease and calls ``stream()`` again with ``request.resume`` set (the
answer the client already has): the engine continues the answer after it, exactly, or says why it cannot
(``resume_refusal``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import AsyncIterator, Literal, Protocol, Sequence, runtime_checkable

from serving.dispatch.failover import HopFailed
from solvers.plan_format import HopDoc

__all__ = ["ChatMessage", "GenerationRequest", "Resume", "Delta", "EngineError", "HopError", "RequestTooLong",
           "Engine", "STEP_FLOOR_S", "STEP_FACTOR", "step_deadline"]

# A hop that does not answer a step within max(STEP_FLOOR_S, STEP_FACTOR x the expected step time) is taken
# for hung (docs/gateway.md, "Fail-over").
STEP_FLOOR_S = 2.0
STEP_FACTOR = 10.0


def step_deadline(expected_step_s: float) -> float:
    return max(STEP_FLOOR_S, STEP_FACTOR * expected_step_s)


@dataclass(frozen=True)
class ChatMessage:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class Resume:
    """The answer so far, when a request resumes on a new chain after a hop failed: ``text`` is what the
    client has received, ``tokens`` its token ids where the engine reports them (PETALS), ``pieces`` the
    number of text deltas it came in."""

    text: str
    tokens: tuple[int, ...] = ()
    pieces: int = 0


@dataclass(frozen=True)
class GenerationRequest:
    """One OpenAI request, checked and normalised by the gateway (n = 1 always)."""

    kind: Literal["chat", "completion"]
    model: str
    messages: tuple[ChatMessage, ...] = ()     # kind == "chat"
    prompt: str = ""                           # kind == "completion"
    max_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None
    resume: Resume | None = None               # set when continuing after a fail-over: produce only what follows


@dataclass(frozen=True)
class Delta:
    """A piece of the answer.  The last one an engine yields carries ``finish_reason``
    ("stop": end of sequence or a stop string; "length": max_tokens reached) and the token counts (of
    the whole answer and the original prompt, also when the request resumed)."""

    text: str = ""
    finish_reason: Literal["stop", "length"] | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tokens: tuple[int, ...] = field(default=(), compare=False)   # the ids behind ``text``, where the engine knows them


class EngineError(RuntimeError):
    """The runtime failed on this request; ``server`` names the hop that failed where it is known."""

    def __init__(self, message: str, *, server: str | None = None):
        super().__init__(message)
        self.server = server


class HopError(EngineError, HopFailed):
    """A hop of the granted chain failed (connection refused or reset, no answer within the step deadline):
    ``server`` names it.  The gateway fails over: it reports the server and resumes on another chain."""

    def __init__(self, message: str, *, server: str | None):
        super().__init__(message, server=server)


class RequestTooLong(EngineError):
    """The request does not fit the runtime's longest sequence: the request's fault (a 400), no server's.

    ``param`` says what to shorten: ``"prompt"`` (the prompt alone leaves no room for one token; the
    gateway names ``messages`` or ``prompt``) or ``"max_tokens"`` (the prompt fits, the answer does not)."""

    def __init__(self, message: str, *, param: Literal["prompt", "max_tokens"] = "max_tokens"):
        super().__init__(message)
        self.param = param


@runtime_checkable
class Engine(Protocol):
    name: str

    def stream(self, request: GenerationRequest, hops: Sequence[HopDoc]) -> AsyncIterator[Delta]:
        """Run ``request`` on the chain ``hops`` (in order, block ranges as granted); yield the answer."""
        ...

    def resume_refusal(self, request: GenerationRequest, resume: Resume) -> str | None:
        """None when ``stream()`` can continue ``request`` exactly after ``resume``; else why not."""
        ...

    async def aclose(self) -> None:
        """Release what the engine holds (connections, PETALS sessions)."""
        ...
