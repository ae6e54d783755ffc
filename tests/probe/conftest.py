"""Shared fixtures: a tiny LLaMA-style architecture and one measurement of it (CPU)."""

from __future__ import annotations

import json

import pytest
import torch

from gpu_probe.models import ModelSpec
from solvers.calibration import Architecture

# hidden 256, 4 heads, 2 KV heads (GQA), ffn 512: milliseconds per call on a CPU.
TINY = Architecture(hidden_size=256, num_layers=4, num_heads=4, num_kv_heads=2, ffn_size=512,
                    gated_ffn=True, head_dim=64, dtype="fp32", kv_dtype="fp32", max_seq_len=32768)
TINY_BLOOM = Architecture(hidden_size=256, num_layers=4, num_heads=4, num_kv_heads=4, ffn_size=1024,
                          gated_ffn=False, head_dim=64, dtype="fp32", kv_dtype="fp32", max_seq_len=32768)
# Far apart so that noise on a shared 2-core machine cannot flip the order of medians.
PREFILL = [16, 1024]
DECODE = [16, 16384]
# The batch sweep: 1, 2, 4, 8 sequences at 64 tokens each (a few milliseconds).
MAX_BATCH, BATCH_CONTEXT = 8, 64


@pytest.fixture(scope="session", autouse=True)
def _one_thread():
    # One thread: with two OpenMP threads on a 2-core box that is also running other
    # work, small kernels stall at thread barriers and timings become erratic.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_spec() -> ModelSpec:
    return ModelSpec(name="tiny-llama", source="config", architecture=TINY)


@pytest.fixture(scope="session")
def tiny_measurement(tiny_spec):
    from gpu_probe.measure import measure_block
    return measure_block(tiny_spec, "fp32", torch.device("cpu"), prefill_lengths=PREFILL,
                         decode_contexts=DECODE, warmup=1, repeats=5, activation_tokens=64,
                         max_batch=MAX_BATCH, batch_context=BATCH_CONTEXT)


@pytest.fixture()
def tiny_config(tmp_path):
    cfg = {"model_type": "llama", "hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 4,
           "num_key_value_heads": 2, "intermediate_size": 512, "hidden_act": "silu",
           "torch_dtype": "float32", "max_position_embeddings": 32768, "_name_or_path": "tiny-llama"}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    return path


class _Recorder:
    """What the fake service saw, and what it answers."""

    def __init__(self):
        self.requests: list[dict] = []
        self.status = 201
        self.answer: dict = {"id": 7, "accepted": True}


@pytest.fixture()
def fake_service():
    """A tiny HTTP service on 127.0.0.1 standing in for /api/v1/probe/reports/."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    rec = _Recorder()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self, status: int, body: dict):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._reply(404, {"detail": "not found"})

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            rec.requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(raw)})
            self._reply(rec.status, rec.answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    rec.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield rec
    server.shutdown()
    server.server_close()
