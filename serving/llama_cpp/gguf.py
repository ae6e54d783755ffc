"""Convert a local Hugging Face model directory to GGUF with llama.cpp's own converter (nothing fetched).

    python -m serving.llama_cpp.gguf MODEL_DIR OUT.gguf [--outtype f32] [--python PYTHON]

Runs ``convert_hf_to_gguf.py`` of the llama.cpp source that ``bash scripts/llama_cpp.sh`` built (its
``src/``), with that source's ``gguf-py`` on the path, in an environment that has torch, numpy and
sentencepiece (default: the PETALS one, ``.venv-petals``, which also makes the tiny model:
``python -m serving.petals.tiny_model DIR --tokenizer sentencepiece``; llama.cpp's converter refuses the
byte-level BPE one).  Idempotent: an output newer than every file of the model directory is kept.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from serving.llama_cpp import llama_cpp_home

REPO = Path(__file__).resolve().parents[2]
OUTTYPES = ("f32", "f16", "bf16", "q8_0")


class ConvertError(Exception):
    pass


def converter(home: Path | None = None) -> Path:
    script = (home or llama_cpp_home()) / "src" / "convert_hf_to_gguf.py"
    if not script.is_file():
        raise ConvertError(f"{script} missing: run bash scripts/llama_cpp.sh (it keeps the llama.cpp source it built)")
    return script


def convert(model_dir: str | Path, out: str | Path, *, outtype: str = "f32", python: str | Path | None = None,
            home: Path | None = None) -> Path:
    """``out``, converted from ``model_dir`` unless it is already newer than every file there."""
    model_dir, out = Path(model_dir), Path(out)
    if outtype not in OUTTYPES:
        raise ConvertError(f"--outtype: expected one of {', '.join(OUTTYPES)}, got {outtype!r}")
    if not (model_dir / "config.json").is_file():
        raise ConvertError(f"{model_dir}: no config.json (not a Hugging Face model directory)")
    newest = max(f.stat().st_mtime for f in model_dir.iterdir() if f.is_file())
    if out.is_file() and out.stat().st_mtime > newest:
        return out
    script = converter(home)
    py = Path(python) if python else REPO / ".venv-petals" / "bin" / "python"
    if not py.exists():
        raise ConvertError(f"{py} missing: the converter needs torch, numpy and sentencepiece (bash "
                           "scripts/install_petals.sh makes .venv-petals, or pass --python)")
    env = dict(os.environ, PYTHONPATH=str(script.parent / "gguf-py"), HF_HUB_OFFLINE="1")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    res = subprocess.run([str(py), str(script), str(model_dir), "--outtype", outtype, "--outfile", str(tmp)],
                         env=env, capture_output=True, text=True)
    if res.returncode != 0 or not tmp.is_file():
        tail = " | ".join((res.stderr or res.stdout).strip().splitlines()[-5:])
        raise ConvertError(f"convert_hf_to_gguf.py failed ({res.returncode}): {tail}")
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir")
    p.add_argument("out")
    p.add_argument("--outtype", default="f32", choices=OUTTYPES,
                   help="weight type (default f32: the tiny model's own, so the plan's block size is the GGUF's)")
    p.add_argument("--python", default=None, help="an interpreter with torch, numpy, sentencepiece")
    a = p.parse_args(argv)
    try:
        print(convert(a.model_dir, a.out, outtype=a.outtype, python=a.python))
    except ConvertError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
