"""Prompt and target token ids with explicit labels, shared by training and inference.

Inference encodes prompts exactly as training did (same call), so generation continues where training taught.
The EOS that ends each target stays in the labels: labels are built from lengths, never by masking the pad id
(pad == EOS here, so masking by id would delete every EOS label and the model would never learn to stop).
"""

from __future__ import annotations

from dataclasses import dataclass

from experiments.config import LossOn

IGNORE_INDEX = -100


@dataclass(frozen=True)
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]

    @property
    def loss_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """BOS + prompt tokens."""
    return tokenizer(prompt, add_special_tokens=True).input_ids


def encode_example(tokenizer, prompt: str, target: str, loss_on: LossOn) -> TokenizedExample:
    """prompt + target + EOS; prompt positions masked from the loss when loss_on=completion."""
    prompt_ids = encode_prompt(tokenizer, prompt)
    target_ids = tokenizer(target, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
    prompt_labels = [IGNORE_INDEX] * len(prompt_ids) if loss_on == LossOn.completion else list(prompt_ids)
    return TokenizedExample(input_ids=prompt_ids + target_ids, labels=prompt_labels + target_ids)
