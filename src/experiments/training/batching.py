"""Micro-batches built before training: grouped by length inside random mega-batches, each padded to its own
longest example.

Padding every example to `max_length` (the seed notebooks' way) spends most of the compute on pad tokens; a
WikiSQL prompt with its SQL is far shorter than 256/512 tokens. Sorting the whole training set by length would
remove nearly all padding, but then every optimizer step holds examples of one length and so of one query shape
(the shortest steps have no WHERE clause, the longest three or four conditions), which the notebooks' random
batches never did. So, as the HF Trainer's `group_by_length` does, examples are shuffled, cut into random
mega-batches of `group_batches` micro-batches, and sorted by length only inside each mega-batch: a step still mixes
shapes while padding stays low (tests/training/test_batching.py measures both). Count-based plans are drawn again each
epoch (seeded by seed and epoch, like the notebooks' random sampler); the Trainer shuffles their order.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import torch

from experiments.model.tokenization import IGNORE_INDEX, TokenizedExample

# Micro-batches per random mega-batch sorted by length. The HF Trainer uses 50, which on a few thousand examples is
# nearly a global sort; 4 keeps padding ~12% of tokens (random batches: 35-45%) with a median spread of ~20 tokens
# inside a step (global sort: 2), on the bundled sample at 8 and 16 examples per step.
DEFAULT_GROUP_BATCHES = 4


def _grouped_order(lengths: Sequence[int], group_size: int | None, seed: int, epoch: int) -> list[int]:
    """A seeded shuffle of the indices (a new one per epoch) and, with `group_size`, each consecutive run of that
    many examples sorted by length (stable: ties keep their shuffled order)."""
    order = list(range(len(lengths)))
    random.Random(f"{seed}-{epoch}").shuffle(order)
    if not group_size:
        return order
    return [i for start in range(0, len(order), group_size)
            for i in sorted(order[start:start + group_size], key=lambda i: lengths[i])]


def plan_batches(lengths: Sequence[int], batch_size: int, *, group_by_length: bool = True,
                 group_batches: int = DEFAULT_GROUP_BATCHES, seed: int = 0, epoch: int = 0) -> list[list[int]]:
    """Indices per micro-batch of `batch_size` examples: random, and with `group_by_length` grouped by length
    inside random mega-batches of `group_batches` micro-batches."""
    order = _grouped_order(lengths, batch_size * group_batches if group_by_length else None, seed, epoch)
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def plan_token_batches(lengths: Sequence[int], max_tokens: int, *, group_by_length: bool = True,
                       group_batches: int = DEFAULT_GROUP_BATCHES, seed: int = 0) -> list[list[int]]:
    """Indices per micro-batch holding as many examples as fit `max_tokens` padded tokens (count x longest), filled
    greedily in the same seeded (and, if grouping, length-grouped) order as plan_batches; an example longer than
    the budget gets a batch of its own. The mega-batches hold about `group_batches` budgets of examples."""
    typical = sorted(lengths)[len(lengths) // 2] if lengths else 1
    group_size = max(1, max_tokens // max(1, typical)) * group_batches if group_by_length else None
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in _grouped_order(lengths, group_size, seed, epoch=0):
        if current and (len(current) + 1) * max(longest, lengths[i]) > max_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, lengths[i])
    if current:
        batches.append(current)
    return batches


class BatchDataset(torch.utils.data.Dataset):
    """Each item is one planned micro-batch (a list of examples); use with DataLoader batch_size=1.

    With a `replan` function the micro-batches are drawn again for each epoch (`set_epoch`, called by
    train.ReplanEachEpoch); the number of micro-batches stays the same, as the Trainer's schedule needs."""

    def __init__(self, examples: Sequence[TokenizedExample], batches: list[list[int]],
                 replan: Callable[[int], list[list[int]]] | None = None):
        self.examples = examples
        self.batches = batches
        self.replan = replan
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        if self.replan is None or epoch == self.epoch:
            return
        batches = self.replan(epoch)
        if len(batches) != len(self.batches):
            raise RuntimeError(f"epoch {epoch}: {len(batches)} micro-batches planned, {len(self.batches)} expected")
        self.batches, self.epoch = batches, epoch

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> list[TokenizedExample]:
        return [self.examples[i] for i in self.batches[index]]


def collate_padded(examples: Sequence[TokenizedExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example; pads get attention 0 and label IGNORE_INDEX."""
    longest = max(len(e.input_ids) for e in examples)
    input_ids = torch.full((len(examples), longest), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), longest), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(examples), longest), dtype=torch.long)
    for row, example in enumerate(examples):
        n = len(example.input_ids)
        input_ids[row, :n] = torch.tensor(example.input_ids)
        labels[row, :n] = torch.tensor(example.labels)
        attention[row, :n] = 1
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def keep_only_labelled_logits(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch plus `logits_to_keep` and `shift_labels`, so the model projects onto the vocabulary only at the
    positions whose next token carries a label (same loss and gradients: the others add nothing to the loss).

    With a 32k vocabulary the lm_head dominates a small model's step, and with loss on the SQL alone most positions
    (the prompt, the pads) carry no label. `logits_to_keep` (positions, shared by the rows) is every position where
    some row predicts a labelled token; `shift_labels` holds what each row predicts there (IGNORE_INDEX elsewhere),
    the causal-LM loss's already shifted labels, which the Trainer also counts for its loss normalisation.
    """
    next_labels = torch.nn.functional.pad(batch["labels"][:, 1:], (0, 1), value=IGNORE_INDEX)
    positions = (next_labels != IGNORE_INDEX).any(dim=0).nonzero().flatten()
    return {**batch, "logits_to_keep": positions, "shift_labels": next_labels[:, positions].contiguous()}


class PlannedBatchCollator:
    """Unwraps the one planned micro-batch the DataLoader hands over, pads it and marks the positions that carry
    a label (keep_only_labelled_logits)."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, items: list[list[TokenizedExample]]) -> dict[str, torch.Tensor]:
        return keep_only_labelled_logits(collate_padded([example for item in items for example in item], self.pad_id))
