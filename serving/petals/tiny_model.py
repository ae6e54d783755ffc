"""Make a tiny LLaMA-style model on disk, locally: random weights and a tokenizer trained on a few
lines of text.  Nothing is fetched from a model hub.

Two tokenizers:

- ``bpe`` (the default, what the testbed uses): a byte-level BPE saved as a fast tokenizer;
- ``sentencepiece``: a SentencePiece BPE model (``tokenizer.model``, byte fallback) saved as
  LLaMA's slow tokenizer (PETALS loads it with ``use_fast=False``).  llama.cpp's GGUF converter
  refuses a locally trained GPT-2-style tokenizer but takes this one; it is trained with
  ``normalization_rule_name="identity"`` and ``remove_extra_whitespaces=False``, without which
  PETALS, vLLM and llama.cpp load tokenizers that disagree on ids.

Both carry a chat template in ``tokenizer_config.json`` (what the gateway's chat endpoint applies).

Runs inside the PETALS virtual environment (transformers, tokenizers, sentencepiece):
    .venv-petals/bin/python -m serving.petals.tiny_model DIR [--layers 8 --hidden 64 --vocab 1000]
                                                             [--tokenizer bpe|sentencepiece]
"""

from __future__ import annotations

import argparse
import io
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
# beyond ASCII, so the SentencePiece model has multi-byte pieces and byte-fallback tokens to decode
_CORPUS_UNICODE = ["Grüße aus Köln — naïve café, 東京 と 大阪, ✓ done."]

# A plain-text template (no special tokens beyond BOS): every runtime renders it the same way.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}### {{ m['role'] }}:\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}### assistant:\n{% endif %}"
)
TOKENIZERS = ("bpe", "sentencepiece")


def _bpe_tokenizer(vocab: int):
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(_CORPUS * 20, vocab_size=vocab, min_frequency=1,
                            special_tokens=["<s>", "</s>", "<unk>"])
    return PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


def _sentencepiece_tokenizer(vocab: int, out: Path):
    import sentencepiece as spm
    from transformers import LlamaTokenizer

    model = io.BytesIO()
    # ids 0..2 as LLaMA has them (unk, bos, eos); the vocabulary is what the corpus supports, up to ``vocab``
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter((_CORPUS + _CORPUS_UNICODE) * 20), model_writer=model, vocab_size=vocab,
        model_type="bpe", byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, hard_vocab_limit=False, minloglevel=2)
    path = out / "tokenizer.model"
    path.write_bytes(model.getvalue())
    return LlamaTokenizer(vocab_file=str(path), bos_token="<s>", eos_token="</s>", unk_token="<unk>", legacy=True)


def make_tiny_llama(out_dir: str | Path, *, layers: int = 8, hidden: int = 64, heads: int = 4,
                    vocab: int = 1000, max_positions: int = 512, seed: int = 0, tokenizer: str = "bpe") -> Path:
    """Write config.json, model weights and tokenizer files to ``out_dir`` (idempotent).

    With ``tokenizer="sentencepiece"`` the model's vocabulary is the trained tokenizer's size (at most
    ``vocab``), so every runtime sees the same number of ids."""
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"tokenizer: expected one of {', '.join(TOKENIZERS)}, got {tokenizer!r}")
    out = Path(out_dir)
    stamp = out / ".chainplan-tiny-model.json"
    spec = {"layers": layers, "hidden": hidden, "heads": heads, "vocab": vocab,
            "max_positions": max_positions, "seed": seed}
    spec.update(tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)
    if stamp.exists() and json.loads(stamp.read_text()) == spec:
        return out
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    tok = _bpe_tokenizer(vocab) if tokenizer == "bpe" else _sentencepiece_tokenizer(vocab, out)
    tok.chat_template = CHAT_TEMPLATE
    tok.save_pretrained(out)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tok) if tokenizer == "sentencepiece" else vocab, hidden_size=hidden,
                         intermediate_size=hidden * 4, num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=heads, max_position_embeddings=max_positions,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, torch_dtype="float32")
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
    p.add_argument("--tokenizer", choices=TOKENIZERS, default="bpe",
                   help="bpe: byte-level BPE (fast tokenizer; the testbed's); sentencepiece: a SentencePiece "
                        "model every engine (PETALS, vLLM, llama.cpp) loads with the same ids")
    a = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path = make_tiny_llama(a.out_dir, layers=a.layers, hidden=a.hidden, heads=a.heads, vocab=a.vocab,
                           tokenizer=a.tokenizer)
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
