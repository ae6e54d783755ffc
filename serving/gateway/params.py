"""An OpenAI request body, checked and normalised into a ``GenerationRequest``.

Every parameter the gateway does not support is refused by name (400, ``param`` set): silently
ignoring ``logprobs`` or ``tools`` would answer a different question than the one asked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from .engine import ChatMessage, GenerationRequest
from .errors import OpenAIError, bad_param

__all__ = ["Limits", "Parsed", "parse_chat", "parse_completion"]

_COMMON = frozenset({"model", "stream", "stream_options", "max_tokens", "temperature", "top_p", "stop", "seed", "n"})
CHAT_PARAMS = _COMMON | {"messages", "max_completion_tokens"}
COMPLETION_PARAMS = _COMMON | {"prompt"}
ROLES = ("system", "user", "assistant")
MAX_STOP = 4           # OpenAI's own limit on stop sequences


@dataclass(frozen=True)
class Limits:
    """What one request may ask for (the model's context bounds both)."""

    max_tokens: int = 4096          # largest max_tokens accepted
    default_max_tokens: int = 256   # chat requests that name none (completions default to 16, as OpenAI's)
    max_prompt_chars: int = 200_000


@dataclass(frozen=True)
class Parsed:
    request: GenerationRequest
    stream: bool
    include_usage: bool
    max_tokens_param: str = "max_tokens"    # the name the body gave it by (a refusal names that one)

    @property
    def prompt_param(self) -> str:
        return "messages" if self.request.kind == "chat" else "prompt"


def _refuse_unknown(body: Mapping[str, Any], known: frozenset[str], endpoint: str) -> None:
    unknown = sorted(set(body) - known)
    if unknown:
        raise bad_param(unknown[0], f"unsupported parameter(s) {', '.join(map(repr, unknown))}: the gateway does "
                                    f"not implement them and never ignores one; {endpoint} accepts "
                                    f"{', '.join(sorted(known))}", code="unsupported_parameter")


def _number(body: Mapping[str, Any], name: str, default: float, lo: float, hi: float, *, lo_open: bool = False) -> float:
    v = body.get(name)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
            or v < lo or v > hi or (lo_open and v == lo):
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        raise bad_param(name, f"{name} must be a number in {interval}, got {v!r}")
    return float(v)


def _int(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise bad_param(name, f"{name} must be an integer, got {v!r}")
    return v


def _max_tokens(body: Mapping[str, Any], names: tuple[str, ...], default: int, limits: Limits) -> int:
    given = [n for n in names if body.get(n) is not None]
    if len(given) > 1 and body[given[0]] != body[given[1]]:
        raise bad_param(given[1], f"{given[0]} and {given[1]} disagree; send one of them")
    if not given:
        return default
    name = given[0]
    v = _int(body[name], name)
    if not 1 <= v <= limits.max_tokens:
        raise bad_param(name, f"{name} must be between 1 and {limits.max_tokens} (this model's limit), got {v}")
    return v


def _stop(body: Mapping[str, Any]) -> tuple[str, ...]:
    v = body.get("stop")
    if v is None:
        return ()
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or len(items) > MAX_STOP or not all(isinstance(s, str) and s for s in items):
        raise bad_param("stop", f"stop must be a non-empty string or a list of at most {MAX_STOP} of them, got {v!r}")
    return tuple(items)


def _stream(body: Mapping[str, Any]) -> tuple[bool, bool]:
    stream = body.get("stream")
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise bad_param("stream", f"stream must be true or false, got {stream!r}")
    opts = body.get("stream_options")
    if opts is None:
        return stream, False
    if not stream:
        raise bad_param("stream_options", "stream_options is only allowed with stream: true")
    if not isinstance(opts, dict):
        raise bad_param("stream_options", f"stream_options must be an object, got {opts!r}")
    unknown = sorted(set(opts) - {"include_usage"})
    if unknown:
        raise bad_param(f"stream_options.{unknown[0]}", f"unsupported stream option(s) {', '.join(map(repr, unknown))}; "
                                                        f"only include_usage is supported", code="unsupported_parameter")
    usage = opts.get("include_usage", False)
    if not isinstance(usage, bool):
        raise bad_param("stream_options.include_usage", f"include_usage must be true or false, got {usage!r}")
    return stream, usage


def _common(body: Any, known: frozenset[str], endpoint: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise OpenAIError(400, f"the request body must be a JSON object, got {type(body).__name__}",
                          code="invalid_json")
    _refuse_unknown(body, known, endpoint)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_param("model", "model is required: one of the names GET /v1/models lists",
                        code="missing_required_parameter" if model is None else "invalid_value")
    n = body.get("n")
    if n is not None and _int(n, "n") != 1:
        raise bad_param("n", f"n must be 1 (one answer per request: each runs on one granted chain), got {n}",
                        code="unsupported_value")
    seed = body.get("seed")
    stream, usage = _stream(body)
    return {"model": model, "temperature": _number(body, "temperature", 1.0, 0.0, 2.0),
            "top_p": _number(body, "top_p", 1.0, 0.0, 1.0, lo_open=True), "stop": _stop(body),
            "seed": None if seed is None else _int(seed, "seed"), "_stream": stream, "_usage": usage}


def _content(v: Any, where: str) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, list):          # content parts: text only
        texts = []
        for j, part in enumerate(v):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise bad_param(f"{where}[{j}]", f"only text content parts are supported, got {kind!r}",
                                code="unsupported_value")
            texts.append(part["text"])
        return "".join(texts)
    raise bad_param(where, f"content must be a string or a list of text parts, got {type(v).__name__}")


def _messages(v: Any) -> tuple[ChatMessage, ...]:
    if not isinstance(v, list) or not v:
        raise bad_param("messages", "messages must be a non-empty list of {role, content} objects",
                        code="missing_required_parameter" if v is None else "invalid_value")
    out = []
    for i, m in enumerate(v):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise bad_param(where, f"{where} must be an object with role and content")
        extra = sorted(set(m) - {"role", "content", "name"})
        if extra:
            raise bad_param(f"{where}.{extra[0]}", f"unsupported message field(s) {', '.join(map(repr, extra))}",
                            code="unsupported_parameter")
        role = "system" if m.get("role") == "developer" else m.get("role")
        if role not in ROLES:
            raise bad_param(f"{where}.role", f"role must be one of {', '.join(ROLES)} (or developer), "
                                             f"got {m.get('role')!r}", code="unsupported_value")
        out.append(ChatMessage(role=role, content=_content(m.get("content"), f"{where}.content")))
    return tuple(out)


def _check_size(chars: int, param: str, limits: Limits) -> None:
    if chars > limits.max_prompt_chars:
        raise OpenAIError(413, f"the prompt is {chars} characters; this gateway accepts at most "
                               f"{limits.max_prompt_chars}", param=param, code="context_length_exceeded")


def parse_chat(body: Any, limits: Limits) -> Parsed:
    c = _common(body, CHAT_PARAMS, "/v1/chat/completions")
    messages = _messages(body.get("messages"))
    _check_size(sum(len(m.content) for m in messages), "messages", limits)
    names = ("max_completion_tokens", "max_tokens")
    max_tokens = _max_tokens(body, names, limits.default_max_tokens, limits)
    stream, usage = c.pop("_stream"), c.pop("_usage")
    named = next((n for n in names if body.get(n) is not None), "max_tokens")
    return Parsed(GenerationRequest(kind="chat", messages=messages, max_tokens=max_tokens, **c), stream, usage, named)


def parse_completion(body: Any, limits: Limits) -> Parsed:
    c = _common(body, COMPLETION_PARAMS, "/v1/completions")
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise bad_param("prompt", "prompt must be a string (or a list of exactly one string; token ids and "
                                  "several prompts are not supported)",
                        code="missing_required_parameter" if prompt is None else "unsupported_value")
    _check_size(len(prompt), "prompt", limits)
    max_tokens = _max_tokens(body, ("max_tokens",), min(16, limits.max_tokens), limits)
    stream, usage = c.pop("_stream"), c.pop("_usage")
    return Parsed(GenerationRequest(kind="completion", prompt=prompt, max_tokens=max_tokens, **c), stream, usage)
