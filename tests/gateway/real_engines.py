"""What the tests that feed an export to a real engine (llama.cpp, vLLM) share: the tiny LLaMA with its
SentencePiece tokenizer (made in the PETALS environment), processes run to completion or waited for, and
the gateway started over an engines file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
PETALS_PY = ROOT / ".venv-petals" / "bin" / "python"


def require(ok: bool, msg: str) -> None:
    """Skip without it locally; under CI=true a missing piece is a failure."""
    if not ok:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg)
        pytest.skip(msg)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))             # free on every address, the loopback ones included
        return s.getsockname()[1]


def run(*args: str, **kw) -> str:
    res = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, timeout=180, **kw)
    assert res.returncode == 0, f"{' '.join(args)} failed ({res.returncode}): {res.stderr[-2000:]}"
    return res.stdout


def env(**extra: str) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", **extra)


def tiny_model(root: Path, layers: int = 4, heads: int = 4) -> Path:
    """The tiny LLaMA (fp32, hidden size 64) with the SentencePiece tokenizer llama.cpp's converter and vLLM
    both take (vLLM's CPU attention needs heads of 32 or more: ``heads=2``)."""
    require(PETALS_PY.exists(), "PETALS environment missing (the tiny model is made there): run bash "
                                "scripts/install_petals.sh")
    out = root / "tiny"
    run(str(PETALS_PY), "-m", "serving.petals.tiny_model", str(out), "--layers", str(layers), "--heads", str(heads),
        "--tokenizer", "sentencepiece", env=env(PYTHONWARNINGS="ignore"))
    return out


def wait_line(proc: subprocess.Popen, want: str, timeout_s: float, log: Path) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode}: {log.read_text(errors='replace')[-3000:]}")
        if want in log.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise AssertionError(f"no {want!r} within {timeout_s} s: {log.read_text(errors='replace')[-3000:]}")


def start_gateway(args: list[str], log: Path, key: str, *, prefix: str | None = None) -> tuple[subprocess.Popen, str]:
    """``python -m serving.gateway [--prefix P] serve ARGS`` on a free port, once /v1/models answers the key."""
    port = free_port()
    head = [sys.executable, "-m", "serving.gateway"] + (["--prefix", prefix] if prefix else [])
    proc = subprocess.Popen([*head, "serve", *args, "--port", str(port)], env=env(), cwd=ROOT,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    t0 = time.monotonic()
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"the gateway exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(base + "/models", timeout=2, headers={"authorization": f"Bearer {key}"}).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        assert time.monotonic() - t0 < 30, log.read_text()[-2000:]
        time.sleep(0.1)


def stop(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
    for p in reversed(procs):
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
