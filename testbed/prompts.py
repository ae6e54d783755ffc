"""Prompts for replaying the testbed's requests as OpenAI calls (``--via gateway``).

The testbed's own client feeds ``l_in`` random token ids and takes ``l_out`` greedy steps, whatever
they are.  An OpenAI request is text, and the gateway's engine stops at the end-of-sequence token, so
a prompt only gives the same work if its text tokenizes to exactly ``l_in`` ids and its greedy
continuation runs ``l_out`` tokens without the end of sequence.  This picks such prompts on the model
itself (the tiny model's weights are local): random ids decoded to text, kept when the text encodes back
to ``l_in`` ids (as the engine tokenizes a completion prompt) and when the local model's greedy
continuation (temperature 0, what the requests ask for) has no end-of-sequence token in its first
``l_out`` tokens and each of them adds text at once (so the first token is the first text the client
sees, and every token is one streamed piece).

Runs inside the PETALS environment (transformers, torch):
    .venv-petals/bin/python -m testbed.prompts MODEL_DIR --count 40 --input-tokens 8 --output-tokens 12
prints one JSON list of strings.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path


def pick_prompts(model_dir: str, count: int, input_tokens: int, output_tokens: int, seed: int = 1,
                 max_tries: int = 5000) -> list[str]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    slow = (Path(model_dir) / "tokenizer.model").exists()      # as serving.petals.generate loads it
    tok = AutoTokenizer.from_pretrained(model_dir, use_fast=not slow)
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    torch.set_num_threads(1)
    special = set(tok.all_special_ids)
    # printable pieces only: the prompts stay readable in the report's rows
    pool = [i for i in range(len(tok)) if i not in special and tok.decode([i]).isprintable()]
    rng = random.Random(seed)
    out: list[str] = []
    tries = 0
    for tries in range(1, max_tries + 1):
        if len(out) >= count:
            break
        text = tok.decode([rng.choice(pool) for _ in range(input_tokens)], skip_special_tokens=True)
        ids = list(tok(text)["input_ids"])
        if len(ids) != input_tokens or not text.strip():
            continue
        seq = list(ids)
        with torch.inference_mode():      # greedy, as the engine samples at temperature 0
            for _ in range(output_tokens):
                seq.append(int(model(torch.tensor([seq])).logits[0, -1].argmax()))
        new = seq[len(ids):]
        if tok.eos_token_id in new:
            continue
        shown = [tok.decode(ids + new[:k], skip_special_tokens=True) for k in range(output_tokens + 1)]
        if all(len(b) > len(a) and b.startswith(a) and "\ufffd" not in b for a, b in zip(shown, shown[1:])):
            out.append(text)
    if len(out) < count:
        raise SystemExit(f"testbed.prompts: only {len(out)} of {count} prompts found in {tries} tries")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir")
    p.add_argument("--count", type=int, default=40)
    p.add_argument("--input-tokens", type=int, default=8)
    p.add_argument("--output-tokens", type=int, default=12)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args(argv)
    print(json.dumps(pick_prompts(a.model_dir, a.count, a.input_tokens, a.output_tokens, a.seed)))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
