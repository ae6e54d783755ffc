"""PETALS' own ``generate`` over a forced route, for comparison with the gateway's ``petals`` engine.

Runs inside .venv-petals: ``python tests/petals/petals_reference.py MODEL_DIR PEER_MADDR DHT_PREFIX
CHAIN_JSON PROMPT MAX_NEW`` prints ``{"prompt_ids", "ids", "text"}`` (greedy, HF's generate loop).
"""

import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from serving.petals.client import Client  # noqa: E402


def main() -> None:
    model_dir, peer, prefix, chain, prompt, max_new = sys.argv[1:7]
    chain = json.loads(chain)
    client = Client(model_dir, [peer], prefix, max_retries=2)
    client.wait_for_peers({p for p, _, _ in chain})
    tok = AutoTokenizer.from_pretrained(model_dir, use_fast=False)
    prompt_ids = tok(prompt)["input_ids"]
    # the model's own layers, routed over exactly the chain
    client.model.model.layers.sequence_manager = client.manager_for(chain)
    with torch.inference_mode():
        out = client.model.generate(torch.tensor([prompt_ids]), max_new_tokens=int(max_new), do_sample=False)
    ids = out[0, len(prompt_ids):].tolist()
    if ids and ids[-1] == tok.eos_token_id:
        ids = ids[:-1]
    full = tok.decode(prompt_ids + ids, skip_special_tokens=True)
    text = full[len(tok.decode(prompt_ids, skip_special_tokens=True)):]
    print(json.dumps({"prompt_ids": prompt_ids, "ids": ids, "text": text}), flush=True)
    time.sleep(600)     # the caller reads the line, then stops this process tree (hivemind's daemons too)


if __name__ == "__main__":
    main()
