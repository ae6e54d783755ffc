"""A JSON parser that turns every malformed body into a 400, never a 500."""

from __future__ import annotations

import json

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON (numbers must be finite)")


class SafeJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", "utf-8")
        try:
            raw = stream.read() if stream is not None else b""
            return json.loads(raw.decode(encoding), parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            raise ParseError(f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
        except RecursionError:
            # json's C decoder recurses per nesting level; a hostile body can exhaust the stack
            raise ParseError("malformed JSON: nested too deeply") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"malformed JSON: {exc}") from None
