"""Make a tiny LLaMA-style model on disk, locally: random weights and a byte-level BPE
tokenizer trained on a few lines of text.  Nothing is fetched from a model hub.

Runs inside the PETALS virtual environment (transformers + tokenizers):
    .venv-petals/bin/python -m serving.petals.tiny_model DIR [--layers 8 --hidden 64 --vocab 1000]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

_CORPUS = [
    "Pipeline parallel serving splits a large model into contiguous blocks held by different servers.",
    "A chain of servers runs every block once; each request flows through one chain.",
    "The dispatcher sends each job to the fastest chain that has a free cache slot.",
    "Servers differ in memory, speed and network distance; plans should use what was measured.",
    "The quick brown fox jumps over the lazy dog 0123456789 times.",
]


def make_tiny_llama(out_dir: str | Path, *, layers: int = 8, hidden: int = 64, heads: int = 4,
                    vocab: int = 1000, max_positions: int = 512, seed: int = 0) -> Path:
    """Write config.json, model weights and tokenizer files to ``out_dir`` (idempotent)."""
    out = Path(out_dir)
    stamp = out / ".chainplan-tiny-model.json"
    spec = {"layers": layers, "hidden": hidden, "heads": heads, "vocab": vocab,
            "max_positions": max_positions, "seed": seed}
    if stamp.exists() and json.loads(stamp.read_text()) == spec:
        return out
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(_CORPUS * 20, vocab_size=vocab, min_frequency=1,
                            special_tokens=["<s>", "</s>", "<unk>"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>")
    tokenizer.save_pretrained(out)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=hidden * 4,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=max_positions, bos_token_id=0, eos_token_id=1,
                         torch_dtype="float32")
    model = LlamaForCausalLM(config)
    model.save_pretrained(out, safe_serialization=True)
    stamp.write_text(json.dumps(spec))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir")
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=1000)
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = make_tiny_llama(a.out_dir, layers=a.layers, hidden=a.hidden, heads=a.heads, vocab=a.vocab)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
