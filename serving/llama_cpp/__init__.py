"""llama.cpp beside chainplan: launch a plan's chains as ``python -m solvers export --runtime llama.cpp``
says (``launch``), and convert a local Hugging Face model to GGUF with llama.cpp's own converter (``gguf``).
The binaries come from ``bash scripts/llama_cpp.sh`` (built once per machine, cached)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["llama_cpp_home"]


def llama_cpp_home() -> Path:
    """Where ``scripts/llama_cpp.sh`` builds: ``$LLAMA_CPP_HOME`` or ``~/.cache/chainplan/llama.cpp``
    (``bin/`` holds the binaries, ``src/`` the llama.cpp source they were built from)."""
    return Path(os.environ.get("LLAMA_CPP_HOME") or Path.home() / ".cache" / "chainplan" / "llama.cpp")
