"""A tiny Llama model written as a GGUF file (random float32 weights, a byte-level BPE tokenizer from
tokenizer_families), for the model.gguf_file tests: the same path SmolLM2's Q4_1 file takes, in a second."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np


def write_tiny_gguf(path: Path, tokenizer_dir: Path, hidden: int = 64, layers: int = 2, heads: int = 4,
                    kv_heads: int = 2, ffn: int = 128) -> Path:
    """A llama-architecture GGUF at `path` with the tokenizer saved in `tokenizer_dir` (a byte-level BPE)."""
    spec = json.loads((tokenizer_dir / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    added = {t["id"]: t["content"] for t in spec["added_tokens"]}
    tokens = [None] * (max(max(vocab.values()), max(added, default=0)) + 1)
    for piece, index in vocab.items():
        tokens[index] = piece
    for index, piece in added.items():
        tokens[index] = piece
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(512)
    writer.add_embedding_length(hidden)
    writer.add_block_count(layers)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if i in added else 1 for i in range(len(tokens))])
    writer.add_token_merges(merges)
    ids = {piece: index for index, piece in added.items()}
    writer.add_bos_token_id(ids[config["bos_token"]])
    writer.add_eos_token_id(ids[config["eos_token"]])
    rng = np.random.default_rng(0)

    def t(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    writer.add_tensor("token_embd.weight", t(len(tokens), hidden))
    for b in range(layers):
        writer.add_tensor(f"blk.{b}.attn_norm.weight", np.ones(hidden, np.float32))
        writer.add_tensor(f"blk.{b}.attn_q.weight", t(hidden, hidden))
        writer.add_tensor(f"blk.{b}.attn_k.weight", t(kv_heads * hidden // heads, hidden))
        writer.add_tensor(f"blk.{b}.attn_v.weight", t(kv_heads * hidden // heads, hidden))
        writer.add_tensor(f"blk.{b}.attn_output.weight", t(hidden, hidden))
        writer.add_tensor(f"blk.{b}.ffn_norm.weight", np.ones(hidden, np.float32))
        writer.add_tensor(f"blk.{b}.ffn_gate.weight", t(ffn, hidden))
        writer.add_tensor(f"blk.{b}.ffn_up.weight", t(ffn, hidden))
        writer.add_tensor(f"blk.{b}.ffn_down.weight", t(hidden, ffn))
    writer.add_tensor("output_norm.weight", np.ones(hidden, np.float32))
    writer.add_tensor("output.weight", t(len(tokens), hidden))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
