"""Prompt and target token ids with explicit labels, shared by training and inference.

Inference encodes prompts exactly as training did (same call), so generation continues where training taught.
The target is tokenised as the continuation of its prompt (prompt + target in one call, split at the prompt's
length), not on its own: SentencePiece would start a lone target with `▁SE`, `LECT` where the same text after the
prompt is `SELECT`, and a pretrained model would have to unlearn its natural continuation.
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


def encode_target(tokenizer, prompt: str, target: str, prompt_ids: list[int] | None = None) -> list[int]:
    """The target's ids as the continuation of `prompt` (without EOS): prompt and target tokenised together and
    split at the prompt's length. Raises ValueError when the tokenizer merges the prompt's last token with the
    target's first, since generation could then never continue the prompt the way training did."""
    prompt_ids = encode_prompt(tokenizer, prompt) if prompt_ids is None else prompt_ids
    joint = encode_prompt(tokenizer, prompt + target)
    if joint[:len(prompt_ids)] != prompt_ids:
        raise ValueError(f"tokenizer {type(tokenizer).__name__}: the prompt's tokens are not a prefix of prompt + "
                         f"target's (prompt ending {prompt[-40:]!r}, target starting {target[:40]!r}); the prompt "
                         "must end at a token boundary (experiments.data.prompt.SQL_SECTION ends with a newline)")
    return joint[len(prompt_ids):]


def encode_example(tokenizer, prompt: str, target: str, loss_on: LossOn) -> TokenizedExample:
    """prompt + target + EOS; prompt positions masked from the loss when loss_on=completion."""
    prompt_ids = encode_prompt(tokenizer, prompt)
    target_ids = encode_target(tokenizer, prompt, target, prompt_ids) + [tokenizer.eos_token_id]
    prompt_labels = [IGNORE_INDEX] * len(prompt_ids) if loss_on == LossOn.completion else list(prompt_ids)
    return TokenizedExample(input_ids=prompt_ids + target_ids, labels=prompt_labels + target_ids)
