"""A benchmark harness engine (not a test double: the suite never uses it): answers every request at once.

It implements ``serving.gateway.engine.Engine``: ``max_tokens`` pieces of text, each one token, then the
final piece with the counts, all without waiting on anything.  With it in the gateway's process, a load
generator measures what the gateway itself costs per request and per streamed token (its ceiling),
since no runtime's time is mixed in.
"""

from __future__ import annotations

from typing import AsyncIterator, Sequence

from serving.gateway.engine import Delta, EngineError, GenerationRequest
from solvers.plan_format import HopDoc

TOKEN = " tok"
_PIECE = Delta(text=TOKEN)


class InstantEngine:
    name = "instant"

    def __init__(self, chains: Sequence[Sequence[str]]):
        self.chains = {tuple(c) for c in chains}

    async def stream(self, request: GenerationRequest, hops: Sequence[HopDoc]) -> AsyncIterator[Delta]:
        chain = tuple(h.server for h in hops)
        if chain not in self.chains:       # it runs only what it was given, as a real engine would
            raise EngineError(f"no engine for the chain {chain}")
        prompt = request.prompt or "".join(m.content for m in request.messages)
        for _ in range(request.max_tokens):
            yield _PIECE
        yield Delta(finish_reason="length", prompt_tokens=max(1, len(prompt) // 4),
                    completion_tokens=request.max_tokens)

    async def aclose(self) -> None:
        return None
