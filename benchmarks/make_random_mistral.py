"""Save a random-initialised Mistral-7B (v0.1 architecture) to a local directory.

Weight values change neither speed nor memory, so this stands in for the real checkpoint where the Hub is out of
reach (the benchmark machine): `experiments experiment=baseline model.name_or_path=DIR` then loads it through the
project's normal 4-bit path.

    python benchmarks/make_random_mistral.py /tmp/mistral-7b-random --tokenizer DIR_OR_tokenizer.model
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from transformers import MistralConfig, MistralForCausalLM

from experiments.config import ModelConfig
from experiments.model.loading import load_tokenizer

MISTRAL_7B_V01 = dict(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                      num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=32768,
                      rms_norm_eps=1e-5, rope_theta=10000.0, sliding_window=4096, tie_word_embeddings=False,
                      bos_token_id=1, eos_token_id=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--tokenizer", default=None, help="tokenizer dir or .model (default: mistral-common's)")
    parser.add_argument("--layers", type=int, default=MISTRAL_7B_V01["num_hidden_layers"])
    args = parser.parse_args()
    started = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    config = MistralConfig(**{**MISTRAL_7B_V01, "num_hidden_layers": args.layers}, dtype="bfloat16")
    torch.manual_seed(0)
    with torch.device(device):
        model = MistralForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(args.out, max_shard_size="5GB")
    load_tokenizer(ModelConfig(tokenizer_path=args.tokenizer)).save_pretrained(args.out)
    params = sum(p.numel() for p in model.parameters())
    print(f"saved {params / 1e9:.2f}B-parameter random Mistral to {args.out} in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
