"""The gateway's engines (``serving.gateway.engine.Engine``), one module per kind.

- ``openai``: one OpenAI-compatible server per chain (vLLM, SGLang, llama.cpp's server, exo,
  Parallax), found in the engines file ``python -m solvers export --engines-file`` writes;
- ``petals``: the chain's spans through PETALS' client, inside the PETALS environment.

``make_engine(spec)`` builds one from a model entry of the gateway's configuration; each kind
is imported only when used (PETALS lives in its own virtual environment).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Mapping

from ..engine import Engine

__all__ = ["KINDS", "make_engine"]

KINDS = ("openai", "petals")


def make_engine(spec: Mapping[str, Any], *, base_dir: Path | None = None) -> Engine:
    """The engine a model entry names: ``{"engine": "openai", "engines_file": ...}`` or
    ``{"engine": "petals", ...}`` (the PETALS module's ``from_spec`` reads its own keys)."""
    kind = spec.get("engine")
    if kind not in KINDS:
        raise ValueError(f"engine: unknown engine kind {kind!r} (known: {', '.join(KINDS)})")
    module = importlib.import_module(f".{kind}", __name__)
    return module.from_spec(spec, base_dir=base_dir)
