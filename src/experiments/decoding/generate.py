"""Batched generation of SQL from prepared prompts: the one decoding path of the infer stage and of the train
stage's validation.

Prompts are encoded exactly as training encoded them, sorted by length and generated in large left-padded batches;
each sequence stops at EOS or at a newline (the SQL is one line).
"""

from __future__ import annotations

from pathlib import Path

import torch
from tqdm.auto import tqdm

from experiments.config import ExperimentConfig
from experiments.data.prepared import read_prepared
from experiments.tokenization import encode_prompt, encode_target

TARGET_MARGIN_TOKENS = 8


def newline_token_ids(tokenizer) -> list[int]:
    """Ids of every token whose text holds a newline (SentencePiece byte token <0x0A>, BPE 'Ċ', ...)."""
    ids = []
    for token, index in tokenizer.get_vocab().items():
        if "\n" in token or "<0x0A>" in token or "Ċ" in token:
            ids.append(index)
    return sorted(ids)


def clean_generation(text: str) -> str:
    """The first line of the continuation, stripped: the SQL."""
    return text.split("\n", 1)[0].strip()


def new_tokens_cap(cfg: ExperimentConfig, tokenizer, train_split: Path) -> int:
    """The configured cap, lowered to the longest training SQL (+ EOS and a margin) when training data exists:
    a model never learned to write longer SQL, and random or diverging models would otherwise run to the cap."""
    cap = cfg.inference.max_new_tokens
    if not cfg.inference.bound_by_train_targets or not train_split.is_file():
        return cap
    train = read_prepared(train_split)
    if not train:
        return cap
    longest = max(len(encode_target(tokenizer, p.prompt, p.target)) for p in train)  # tokenised as in training
    return min(cap, longest + 1 + TARGET_MARGIN_TOKENS)


@torch.inference_mode()
def generate_sql(model, tokenizer, prompts: list[str], cfg: ExperimentConfig, device: torch.device,
                 new_tokens_cap: int, progress: bool = True, min_new_tokens: int = 0) -> tuple[list[str], int]:
    """SQL per prompt (input order) and the number of generated tokens. `min_new_tokens` exists for benchmarks:
    random weights never stop by themselves, so both paths are made to generate the same number of tokens."""
    inf = cfg.inference
    encoded = [encode_prompt(tokenizer, p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]), reverse=True)
    stop_ids = [tokenizer.eos_token_id] + (newline_token_ids(tokenizer) if inf.stop_at_newline else [])
    outputs: list[str] = [""] * len(prompts)
    generated_tokens = 0
    pad_id = tokenizer.pad_token_id
    batches = [order[i:i + inf.batch_size] for i in range(0, len(order), inf.batch_size)]
    for batch in tqdm(batches, desc="generating", unit="batch", disable=not progress):
        longest = max(len(encoded[i]) for i in batch)
        input_ids = torch.full((len(batch), longest), pad_id, dtype=torch.long)
        attention = torch.zeros((len(batch), longest), dtype=torch.long)
        for row, i in enumerate(batch):  # left padding: every prompt ends where generation starts
            input_ids[row, longest - len(encoded[i]):] = torch.tensor(encoded[i])
            attention[row, longest - len(encoded[i]):] = 1
        sampling = {"do_sample": True, "temperature": inf.temperature} if inf.temperature > 0 else \
            {"do_sample": False}
        sequences = model.generate(input_ids=input_ids.to(device), attention_mask=attention.to(device),
                                   max_new_tokens=new_tokens_cap, min_new_tokens=min_new_tokens or None,
                                   eos_token_id=stop_ids, pad_token_id=pad_id, **sampling)
        new_tokens = sequences[:, longest:].cpu()
        for row, i in enumerate(batch):
            tokens = new_tokens[row].tolist()
            stop = next((k for k, t in enumerate(tokens) if t in stop_ids), len(tokens))
            generated_tokens += min(stop + 1, len(tokens))
            outputs[i] = clean_generation(tokenizer.decode(tokens[:stop], skip_special_tokens=True))
    return outputs, generated_tokens
