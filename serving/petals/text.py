"""Turning generated token ids into streamed text (standard library only: the PETALS client process
and the gateway's tests both import it).

- ``IncrementalDetokenizer``: text as tokens arrive, never splitting a multi-byte character (a
  byte-fallback token decodes to U+FFFD until the rest of its character arrives) and keeping the
  spaces a SentencePiece tokenizer drops at the start of a decode (the window starts a few tokens
  back, in the prompt for the first one).
- ``StopScanner``: cuts the text at the first stop string, holding back the tail that could still
  become one, so a stop string never reaches the client even when it spans several tokens.
"""

from __future__ import annotations

from typing import Callable, Sequence

__all__ = ["IncrementalDetokenizer", "StopScanner"]

REPLACEMENT = "\ufffd"
CONTEXT_TOKENS = 5      # prompt tokens kept as the first decode window's context


class IncrementalDetokenizer:
    """``push(token_id)`` returns the text that token completes (possibly ""), ``flush()`` what is left.

    ``decode(ids)`` is the tokenizer's decode (special tokens skipped).  Each push decodes a short
    window twice (before and after the new token) and emits the difference once it is whole."""

    def __init__(self, decode: Callable[[Sequence[int]], str], context: Sequence[int] = ()):
        self._decode = decode
        self._ids: list[int] = list(context[-CONTEXT_TOKENS:])
        self._prefix = 0                    # the window's first token
        self._read = len(self._ids)         # tokens up to here are already emitted

    def push(self, token_id: int) -> str:
        self._ids.append(int(token_id))
        before = self._decode(self._ids[self._prefix:self._read])
        after = self._decode(self._ids[self._prefix:])
        if len(after) <= len(before) or after.endswith(REPLACEMENT):
            return ""       # nothing visible yet, or a character still incomplete
        self._prefix, self._read = self._read, len(self._ids)
        return after[len(before):]

    def flush(self) -> str:
        """What is still held back at the end (an incomplete character decodes as U+FFFD)."""
        before = self._decode(self._ids[self._prefix:self._read])
        after = self._decode(self._ids[self._prefix:])
        self._prefix = self._read = len(self._ids)
        return after[len(before):] if len(after) > len(before) else ""


class StopScanner:
    """``push(text)`` -> (text safe to emit, stopped).  After a stop the rest is dropped."""

    def __init__(self, stops: Sequence[str]):
        self.stops = tuple(s for s in stops if s)
        self._held = ""
        self.stopped = False

    def push(self, text: str) -> tuple[str, bool]:
        if self.stopped:
            return "", True
        buf = self._held + text
        cut = min((i for i in (buf.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self._held, self.stopped = "", True
            return buf[:cut], True
        keep = self._partial_tail(buf)
        self._held = buf[len(buf) - keep:] if keep else ""
        return buf[:len(buf) - keep], False

    def flush(self) -> str:
        """The held-back tail when generation ends without a stop (it never became one)."""
        out, self._held = ("" if self.stopped else self._held), ""
        return out

    def _partial_tail(self, buf: str) -> int:
        """Length of the longest suffix of ``buf`` that is a proper prefix of some stop string."""
        best = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(buf)), best, -1):
                if buf.endswith(stop[:n]):
                    best = n
                    break
        return best
