"""Derive bench/data/vidur_linear_ms.csv from Vidur's published per-layer profiles (bench/data/README.md).

Vidur (github.com/microsoft/vidur, MIT licence) profiles every non-attention operation of one
transformer layer (norms, QKV and output projections, rotary embedding, gated MLP, residual add) on
real GPUs, by the number of tokens in the batch and the tensor-parallel degree.  In decode every job
contributes one token, so ``num_tokens`` is the decode batch size; in prefill it is the prompt length.
This keeps, per GPU, model, tensor-parallel degree and a grid of token counts, the sum of the
operations' median times (milliseconds per layer; the median over repeated rows).

    .venv/bin/python bench/vidur_extract.py VIDUR_CHECKOUT [--out bench/data/vidur_linear_ms.csv]
"""

from __future__ import annotations

import argparse
import csv
import statistics
from collections import defaultdict
from pathlib import Path

GPUS = ("a100", "a40", "h100")
MODELS = ("meta-llama/Llama-2-70b-hf", "codellama/CodeLlama-34b-Instruct-hf")
TP = (1, 2, 4)
TOKENS = (1, 2, 4, 8, 16, 32, 48, 64, 96, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024,
          1536, 2048, 3072, 4096)
# the embedding runs once per model, not per layer
SKIP = ("time_stats.emb.",)


def layer_ms(path: Path) -> dict[tuple[int, int], float]:
    """(tensor-parallel degree, tokens) -> milliseconds per layer, from one ``mlp.csv``."""
    seen: dict[tuple[int, int], list[float]] = defaultdict(list)
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            total = sum(float(v) for k, v in row.items()
                        if k.startswith("time_stats.") and k.endswith(".median") and not k.startswith(SKIP))
            seen[int(row["num_tensor_parallel_workers"]), int(row["num_tokens"])].append(total)
    return {key: statistics.median(values) for key, values in seen.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("vidur", type=Path, help="a checkout of github.com/microsoft/vidur")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "data" / "vidur_linear_ms.csv")
    args = ap.parse_args()
    rows = []
    for gpu in GPUS:
        for model in MODELS:
            times = layer_ms(args.vidur / "data" / "profiling" / "compute" / gpu / model / "mlp.csv")
            rows += [(gpu, model, tp, n, f"{times[tp, n]:.4f}") for tp in TP for n in TOKENS]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(("gpu", "model", "tp", "num_tokens", "linear_ms_per_layer"))
        writer.writerows(rows)
    print(f"wrote {args.out} ({len(rows)} rows)")


if __name__ == "__main__":
    main()
