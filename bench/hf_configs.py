"""Block sizes derived from real Hugging Face configs, next to what transformers builds from them.

For every config in examples/hf_configs/ this prints what solvers.hf_config
derives (family, layers, dtype, parameters and GB per block, KV bytes per
token per block, max sequence length, total parameters) and what
``transformers`` itself builds from the same config on the meta device (no
weights, no memory): parameters and bytes of one decoder block and of the
whole model, with the relative differences.  A mixture-of-experts config is
listed with the refusal the planner gives.

    .venv/bin/python bench/hf_configs.py            # markdown table on stdout
    .venv/bin/python bench/hf_configs.py --write    # also bench/results/hf_configs.md
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from solvers.errors import ScenarioError                      # noqa: E402
from solvers.hf_config import derive_hf_config, transformers_counts  # noqa: E402

CONFIGS = ROOT / "examples" / "hf_configs"
RESULT = ROOT / "bench" / "results" / "hf_configs.md"


def rel(a: float, b: float) -> str:
    return f"{(a - b) / b * 100:+.3f} %"


def rows() -> tuple[list[str], list[str]]:
    table, refused = [], []
    for path in sorted(CONFIGS.glob("*.json")):
        cfg = json.loads(path.read_text())
        try:
            d = derive_hf_config(cfg)
        except ScenarioError as exc:
            refused.append(f"- `{path.name}`: refused: {exc}")
            continue
        a = d.architecture
        tf = transformers_counts(cfg, full=True)
        ours_bytes = a.block_size_gb * 1e9
        table.append(
            f"| `{path.name}` | {d.family} | {a.num_layers} | {a.dtype} | {a.num_heads}/{a.num_kv_heads}x{a.head_dim} "
            f"| {'yes' if a.gated_ffn else 'no'} | {a.max_seq_len or '-'} "
            f"| {d.params_per_block:,} | {tf['params_per_block']:,} | {rel(d.params_per_block, tf['params_per_block'])} "
            f"| {a.block_size_gb:.4f} | {rel(ours_bytes, tf['bytes_per_block'])} "
            f"| {a.kv_bytes_per_token():,.0f} "
            f"| {d.total_params / 1e9:.3f} | {tf['total_params'] / 1e9:.3f} | {rel(d.total_params, tf['total_params'])} |")
    return table, refused


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"also write {RESULT.relative_to(ROOT)}")
    args = parser.parse_args()
    import torch
    import transformers
    started = time.perf_counter()
    table, refused = rows()
    took = time.perf_counter() - started
    out = [
        "# Block sizes from Hugging Face configs vs transformers' own parameter counts",
        "",
        "Reproduce: `.venv/bin/python bench/hf_configs.py --write` "
        f"(transformers {transformers.__version__}, torch {torch.__version__}, Python {platform.python_version()}; "
        f"{took:.1f} s). `ours` is `solvers.hf_config.derive_hf_config`; `tf` is the model transformers builds "
        "from the same config.json on the meta device (`solvers.hf_config.transformers_counts`, no weights).",
        "",
        "Columns: heads = attention heads / KV heads x head dim; GB/block = the block size the planner uses "
        "(params x bytes per param of the dtype, GB = 1e9 bytes); its difference is against the bytes of "
        "transformers' block in the config's dtype; KV B/token = keys + values of one block for one token; "
        "total = blocks + embeddings + LM head (ours leaves out the final norm).",
        "",
        "| config | family | layers | dtype | heads | gated FFN | max seq | params/block ours | params/block tf "
        "| diff | GB/block | bytes diff | KV B/token | total B ours | total B tf | total diff |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *table,
        "",
        f"{len(table)} configs derived; every per-block difference is the figure above (the test "
        "tests/solvers/test_hf_config.py holds them within 1 %).",
        "",
        "Refused (mixture-of-experts: the planner will not guess a dense block size):",
        "",
        *refused,
        "",
    ]
    text = "\n".join(out)
    print(text)
    if args.write:
        RESULT.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
