"""Micro-batches built before training: grouped by length and padded to their own longest example.

Padding every example to `max_length` (the seed notebooks' way) spends most of the compute on pad tokens; a
WikiSQL prompt with its SQL is far shorter than 256/512 tokens. Batches are fixed here and the Trainer shuffles
their order each epoch.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from experiments.tokenization import IGNORE_INDEX, TokenizedExample


def plan_batches(lengths: Sequence[int], batch_size: int, *, group_by_length: bool = True,
                 seed: int = 0) -> list[list[int]]:
    """Indices per micro-batch of `batch_size` examples: a seeded shuffle, then (if grouping) sorted by length so
    each batch holds examples of similar length."""
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    if group_by_length:
        order.sort(key=lambda i: lengths[i])  # stable: ties keep their shuffled order
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def plan_token_batches(lengths: Sequence[int], max_tokens: int, *, group_by_length: bool = True,
                       seed: int = 0) -> list[list[int]]:
    """Indices per micro-batch holding as many examples as fit `max_tokens` padded tokens (count x longest), in
    the same seeded (and, if grouping, length-sorted) order as plan_batches; an example longer than the budget
    gets a batch of its own."""
    order = list(range(len(lengths)))
    random.Random(seed).shuffle(order)
    if group_by_length:
        order.sort(key=lambda i: lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        if current and (len(current) + 1) * max(longest, lengths[i]) > max_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(i)
        longest = max(longest, lengths[i])
    if current:
        batches.append(current)
    return batches


class BatchDataset(torch.utils.data.Dataset):
    """Each item is one planned micro-batch (a list of examples); use with DataLoader batch_size=1."""

    def __init__(self, examples: Sequence[TokenizedExample], batches: list[list[int]]):
        self.examples = examples
        self.batches = batches

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


class PlannedBatchCollator:
    """Unwraps the one planned micro-batch the DataLoader hands over and pads it."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, items: list[list[TokenizedExample]]) -> dict[str, torch.Tensor]:
        return collate_padded([example for item in items for example in item], self.pad_id)
