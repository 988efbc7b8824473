"""Out of memory is not the end of a run that a smaller plan fits: the step is re-planned and retried.

A Trainer mixin (`ReplanOnOutOfMemory`) catches `torch.OutOfMemoryError` in a training step, puts the gradients back
as they were before the step's micro-batch, frees the memory, and retries the same micro-batch with the next smaller
plan (memory_plan.smaller): the micro-batch in halves, then gradient checkpointing on, then NF4 dequantised per call,
then ever smaller pieces down to one example. Every piece is normalised by the same count of the step's loss tokens
(the Trainer's `num_items_in_batch`), so the retried step computes the same loss and gradients (tested on CPU). The
run keeps the smaller plan from then on, and the summary lists each change. Only when one example at a time under
the smallest plan does not fit does the run fail, naming the keys to change.

Single process only: in a data-parallel job, a rank that retried alone would run collectives the others do not, so
there the error is raised at once, with the same advice.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

import torch

from experiments.model.dequantize import use_per_call_dequantization
from experiments.model.loading import enable_checkpointing
from experiments.model.memory_plan import TrainPlan, smaller

log = logging.getLogger(__name__)


def out_of_memory_advice(max_length: int, per_device_batch_size: int, gradient_accumulation_steps: int) -> str:
    """What to change when even the smallest plan does not fit (the notebooks' advice, with this run's values)."""
    return (f"lower data_size.max_length (now {max_length}) or training.per_device_batch_size (now "
            f"{per_device_batch_size}), and raise training.gradient_accumulation_steps (now "
            f"{gradient_accumulation_steps}) to keep the examples per optimizer step")


def split_rows(inputs: dict[str, Any], pieces: int) -> list[dict[str, Any]]:
    """The micro-batch as `pieces` row slices: every per-row tensor (2-D or more, first dimension the batch) is split;
    anything else (e.g. an int logits_to_keep) is passed to every piece unchanged."""
    rows = inputs["input_ids"].shape[0]
    pieces = min(pieces, rows)
    chunks = {key: torch.tensor_split(value, pieces) for key, value in inputs.items()
              if isinstance(value, torch.Tensor) and value.dim() >= 2 and value.shape[0] == rows}
    return [{key: chunks[key][i] if key in chunks else value for key, value in inputs.items()} for i in range(pieces)]


def apply_plan(model, old: TrainPlan, new: TrainPlan) -> None:
    """Make `model` (a PEFT model) follow `new` where it differs from `old`: checkpointing on, per-call
    dequantisation. (Splitting is the training step's business.)"""
    if new.gradient_checkpointing and not old.gradient_checkpointing:
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        enable_checkpointing(base)
    if old.dequantize_once and not new.dequantize_once:
        use_per_call_dequantization(model)


class _GradientSnapshot:
    """The trainable parameters' gradients before a micro-batch, to put back after a step that failed halfway
    through its backward pass (None stays None, so a fused step's snapshot costs nothing)."""

    def __init__(self, model) -> None:
        self.saved = [(p, None if p.grad is None else p.grad.detach().clone())
                      for p in model.parameters() if p.requires_grad]

    def restore(self) -> None:
        for param, grad in self.saved:
            param.grad = grad


def release_gpu_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class ReplanOnOutOfMemory:
    """Trainer mixin (put it before `Trainer` in the bases): `training_step` retries an out-of-memory micro-batch
    under ever smaller plans. `memory_plan` is the plan the run started with (None: no re-planning), `advice` what the
    final error tells the user to change."""

    def __init__(self, *args, memory_plan: TrainPlan | None = None, advice: str = "", **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.memory_plan = memory_plan
        self.oom_advice = advice
        self.replans: list[dict[str, Any]] = []

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self.memory_plan is None:
            return super().training_step(model, inputs, num_items_in_batch)
        rows = inputs["input_ids"].shape[0]
        tokens = inputs["input_ids"].numel()
        # Pieces sum to the whole only when each is normalised by the step's loss tokens, not by its own.
        splittable = num_items_in_batch is not None and getattr(self, "model_accepts_loss_kwargs", False)
        snapshot = _GradientSnapshot(self.model)
        while True:
            try:
                return self._planned_step(model, inputs, num_items_in_batch)
            except torch.OutOfMemoryError as err:
                if self.args.world_size > 1:
                    raise torch.OutOfMemoryError(f"{err}\nA data-parallel run cannot re-plan one rank's step: "
                                                 f"{self.oom_advice}") from err
            # outside the except block: the traceback's frames, and the tensors they hold, are gone
            snapshot.restore()
            release_gpu_memory()
            old = self.memory_plan
            new = smaller(old, rows if splittable else 1)
            if new is None:
                raise torch.OutOfMemoryError(
                    f"out of GPU memory on a micro-batch of {rows} examples ({tokens} padded tokens) even with the "
                    f"smallest plan ({old.describe()}): {self.oom_advice}")
            apply_plan(self.model, old, new)
            release_gpu_memory()
            self.memory_plan = new
            self.replans.append({"step": self.state.global_step, "rows": rows, "tokens": tokens,
                                 "from": old.describe(), "to": new.describe()})
            log.warning("step %d: out of GPU memory on a micro-batch of %d examples (%d padded tokens); retrying "
                        "the same step with: %s", self.state.global_step, rows, tokens, new.describe())

    def _planned_step(self, model, inputs, num_items_in_batch):
        if self.memory_plan.split <= 1:
            return super().training_step(model, inputs, num_items_in_batch)
        losses = [super(ReplanOnOutOfMemory, self).training_step(model, piece, num_items_in_batch)
                  for piece in split_rows(inputs, self.memory_plan.split)]
        return torch.stack(losses).sum()
