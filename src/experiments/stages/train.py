"""Stage 2: LoRA fine-tuning, read top to bottom: tokenise with labels, plan batches, build the model, train,
save the adapter.

Writes adapter/ (PEFT adapter + tokenizer only), trainer_state.json, checkpoints/ at the save cadence and
data/train_report.json (what was dropped for length, token counts). `training.resume=true` continues from the
last complete checkpoint in the same run directory (a half-written one is skipped). To MLflow: the Trainer's curves
while it trains (training/callbacks.MetricsToTracker), then the summary's numbers, the memory plans as tags, adapter/
and train_summary.json, and the adapter as an MLflow model (tracking/model_logging.py, rank 0).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import shutil
import statistics
import time
from pathlib import Path

import torch
from transformers import ProgressCallback, Trainer, TrainerCallback, TrainingArguments

from experiments.config import BestBy, ExperimentConfig, Kernels, QuantizationConfig, QuantMode, TrainingConfig
from experiments.data.prepared import read_prepared
from experiments.fileio import replace_dir, write_json, write_text
from experiments.model.kernels import check_kernels, liger_kernels_applied, model_type
from experiments.model.loading import (
    add_lora,
    attend_causally_without_padding_mask,
    attention_without_cudnn,
    autocast_dtype,
    compile_blocks,
    load_base_model,
    load_tokenizer,
    model_source,
    peak_gpu_memory_gib,
    resolve_device,
    weights_dtype,
)
from experiments.model.memory_plan import (
    TrainPlan,
    free_gpu_bytes,
    longest_micro_batch_tokens,
    model_facts,
    plan_training,
    planned_steps,
)
from experiments.model.tokenization import TokenizedExample, encode_example
from experiments.runs.distributed import dist_context, gather_to_main, run_on_main
from experiments.runs.files import RunFiles
from experiments.stages.contract import Artifact, StageResult
from experiments.tracking.metric_names import train_summary_logged
from experiments.training.batching import BatchDataset, PlannedBatchCollator, plan_batches, plan_token_batches
from experiments.training.callbacks import MetricsToTracker
from experiments.training.replan import ReplanOnOutOfMemory, out_of_memory_advice
from experiments.training.val_execution import BestCheckpoint, EvaluateAtTheEnd, ValidationScorer

log = logging.getLogger(__name__)


def tokenize_split(tokenizer, path: Path, cfg: ExperimentConfig) -> tuple[list[TokenizedExample], int]:
    """Tokenised examples that fit max_length, and how many were dropped (never truncated through their SQL)."""
    kept, dropped = [], 0
    for prepared in read_prepared(path):
        example = encode_example(tokenizer, prepared.prompt, prepared.target, cfg.training.loss_on)
        if len(example.input_ids) > cfg.data_size.max_length:
            dropped += 1
            continue
        kept.append(example)
    return kept, dropped


def _rank_share(count: int, world_size: int, what: str) -> int:
    """Each rank's share of `count` under keep_global_batch; refused by name when it does not split evenly."""
    if count % world_size:
        raise ValueError(f"training.keep_global_batch=true: {what}={count} does not split over {world_size} ranks; "
                         "choose a multiple of the rank count or set training.keep_global_batch=false")
    return count // world_size


def micro_batching(t: TrainingConfig, max_length: int, world_size: int = 1) -> tuple[int, int]:
    """(examples per micro-batch, accumulation steps) of one rank for an optimizer step of per_device x
    accumulation examples (on each of `world_size` ranks unless keep_global_batch splits them over the ranks).

    Fused (default): the rank's share of the step in as few micro-batches as keep max_length-long examples under
    max_tokens_per_batch, with the step's size kept exact. Not fused: the configured arrangement.
    """
    split_over_ranks = world_size > 1 and t.keep_global_batch
    if not t.fuse_accumulation:
        if not split_over_ranks:
            return t.per_device_batch_size, t.gradient_accumulation_steps
        return t.per_device_batch_size, _rank_share(t.gradient_accumulation_steps, world_size,
                                                    "training.gradient_accumulation_steps")
    per_step = t.per_device_batch_size * t.gradient_accumulation_steps
    if split_over_ranks:
        per_step = _rank_share(per_step, world_size, "examples per step: per_device_batch_size x "
                                                     "gradient_accumulation_steps")
    splits = 1 if t.max_tokens_per_batch is None else max(1, math.ceil(per_step * max_length / t.max_tokens_per_batch))
    while per_step % splits:
        splits += 1
    return per_step // splits, splits


def token_batching(t: TrainingConfig, max_length: int, world_size: int = 1) -> tuple[int, int]:
    """(padded-token budget per micro-batch, accumulation steps) of one rank when training.tokens_per_step is set:
    the step's budget (split over the ranks under keep_global_batch) in as few micro-batches as
    max_tokens_per_batch allows."""
    assert t.tokens_per_step is not None
    budget = t.tokens_per_step // world_size if world_size > 1 and t.keep_global_batch else t.tokens_per_step
    splits = 1 if t.max_tokens_per_batch is None else max(1, math.ceil(budget / t.max_tokens_per_batch))
    per_micro_batch = budget // splits
    if per_micro_batch < max_length:
        raise ValueError(f"training.tokens_per_step={t.tokens_per_step} leaves {per_micro_batch} tokens per "
                         f"micro-batch{' per rank' if world_size > 1 else ''}, less than data_size.max_length="
                         f"{max_length}: the longest examples would not fit; raise training.tokens_per_step")
    return per_micro_batch, splits


def make_dataset(examples: list[TokenizedExample], examples_per_batch: int, t: TrainingConfig) -> BatchDataset:
    """Micro-batches of `examples_per_batch` examples, drawn again each epoch (ReplanEachEpoch)."""
    lengths = [len(e.input_ids) for e in examples]

    def plan(epoch: int) -> list[list[int]]:
        return plan_batches(lengths, examples_per_batch, group_by_length=t.group_by_length,
                            group_batches=t.length_group_batches, seed=t.seed, epoch=epoch)

    return BatchDataset(examples, plan(0), replan=plan)


def plan_micro_batches(examples: list[TokenizedExample], t: TrainingConfig, max_length: int,
                  world_size: int = 1) -> tuple[BatchDataset, float, int]:
    """This rank's planned micro-batches, the mean examples per micro-batch and the accumulation steps: by example
    count (per_device_batch_size x gradient_accumulation_steps, the default) or by token budget (tokens_per_step;
    planned once, since the number of micro-batches a budget gives changes with the draw)."""
    if t.tokens_per_step is None:
        per_batch, accumulation = micro_batching(t, max_length, world_size)
        return make_dataset(examples, per_batch, t), per_batch, accumulation
    micro_tokens, accumulation = token_batching(t, max_length, world_size)
    batches = plan_token_batches([len(e.input_ids) for e in examples], micro_tokens,
                                 group_by_length=t.group_by_length, group_batches=t.length_group_batches, seed=t.seed)
    return BatchDataset(examples, batches), len(examples) / max(1, len(batches)), accumulation


class ReplanEachEpoch(TrainerCallback):
    """Draws the training micro-batches again at the start of each epoch (the notebooks' random sampler drew new
    batches every epoch); the plan is a function of (seed, epoch), so a resumed run skips the same batches."""

    def __init__(self, dataset: BatchDataset) -> None:
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(math.floor(state.epoch + 1e-9))  # state.epoch is fractional after a mid-epoch resume


def apply_fast_paths(model, t: TrainingConfig, compile: bool | None = None) -> None:
    """The model-side fast paths of training (same maths): causal attention without the right-padding mask and,
    with training.compile (or the memory plan's `compile`), compiled transformer blocks."""
    attend_causally_without_padding_mask(model)
    if t.compile if compile is None else compile:
        log.info("torch.compile: %d transformer blocks (compiled during the first steps)", compile_blocks(model))


def memory_plan_for(cfg: ExperimentConfig, train_set: BatchDataset, accumulation: int, device: torch.device,
                    steps: int | None = None) -> TrainPlan:
    """The run's training plan (memory_plan.plan_training, training.memory_plan) for the longest micro-batch it has
    planned in any epoch and this GPU's free memory; logged before the model is loaded. `steps`: the optimizer steps
    the compile decision is made for (default: the run's own)."""
    t = cfg.training
    run_steps = planned_steps(len(train_set), accumulation, t.num_epochs, t.max_steps)
    epochs = min(20, max(1, math.ceil(run_steps * accumulation / max(1, len(train_set)))))
    plans = [train_set.batches] + ([train_set.replan(e) for e in range(1, epochs)] if train_set.replan else [])
    longest = longest_micro_batch_tokens([len(e.input_ids) for e in train_set.examples], plans)
    facts = dataclasses.replace(model_facts(cfg.model, cfg.quantization, cfg.lora,
                                            weights_dtype(cfg.model, cfg.quantization, device).itemsize),
                                exact_qlora=t.exact_qlora, fused_loss=t.kernels == Kernels.liger)
    plan = plan_training(t.memory_plan, facts, longest, free_gpu_bytes(device),
                                run_steps if steps is None else steps, t.gradient_checkpointing, t.compile)
    free = f" of {plan.free_gib:.1f} GiB free" if plan.free_gib is not None else ""
    log.info("memory plan (training.memory_plan=%s): %s; predicted peak %.1f GiB%s for the longest micro-batch "
             "(%d padded tokens); %s", t.memory_plan.value, plan.describe(), plan.predicted_peak_gib, free, longest,
             plan.reason)
    return plan


def kernels_for(model, t: TrainingConfig) -> contextlib.AbstractContextManager[str]:
    """training.kernels on `model` while the context lasts; yields what was applied ("none", or liger's list)."""
    if t.kernels == Kernels.liger:
        return liger_kernels_applied(model)
    return contextlib.nullcontext(t.kernels.value)


def numerics(t: TrainingConfig, quant: QuantizationConfig) -> str:
    """The step's numerics in words, for the summary and the run's tags."""
    if quant.mode == QuantMode.none:
        return "weights as loaded"
    if t.exact_qlora:
        return "exact QLoRA (float32 norms and embeddings, float32 residual stream)"
    return f"inexact QLoRA ({quant.compute_dtype} norms, embeddings and residual stream)"


class NumericProgress(ProgressCallback):
    """The Trainer's progress bar, with logged values printed as numbers (4 significant digits) rather than the
    quoted strings transformers 5 prints."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and self.training_bar is not None and logs:
            shown = {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in logs.items() if k != "total_flos"}
            self.training_bar.write(" ".join(f"{k}={v}" for k, v in shown.items()))


class ThroughputCallback(TrainerCallback):
    """Adds useful tokens/s and peak GPU memory to every log, and remembers the loss curve."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.rates: list[float] = []
        self.start_tokens = 0
        self._last_time = time.perf_counter()
        self._last_tokens = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start_tokens = self._last_tokens = state.num_input_tokens_seen  # > 0 after a resume
        self._last_time = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs is None:
            return
        now = time.perf_counter()
        seen = state.num_input_tokens_seen
        if "loss" in logs and seen and now > self._last_time:  # training windows (eval time included), not eval logs
            logs["tokens_per_s"] = (seen - self._last_tokens) / (now - self._last_time)
            self.rates.append(logs["tokens_per_s"])
            self._last_time, self._last_tokens = now, seen
        if torch.cuda.is_available():
            logs["peak_memory_gib"] = peak_gpu_memory_gib()
        if "loss" in logs:
            self.losses.append(float(logs["loss"]))


class Text2SqlTrainer(ReplanOnOutOfMemory, Trainer):
    """The HF Trainer plus, at each evaluation, execution accuracy on the val examples (val_execution.ValidationScorer)
    and the best checkpoint by training.best_by (val_execution.BestCheckpoint), with early stopping; a step that runs
    out of memory is retried under a smaller plan (replan.ReplanOnOutOfMemory)."""

    def __init__(self, *args, scorer: ValidationScorer | None, best: BestCheckpoint, is_main: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.scorer, self.best, self.is_main = scorer, best, is_main
        self.validation_seconds = 0.0
        self.evaluations = 0

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        metrics = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)  # eval_loss, logged
        self.evaluations += 1
        if self.scorer is not None:
            scores = self.scorer(self.model)
            self.validation_seconds += scores["val_generation_seconds"]
            self.log(scores)  # a log entry beside eval_loss's: trainer_state.json and the tracker get the curves
            metrics.update(scores)
            log.info("step %d: val execution accuracy %.3f, valid SQL %.3f (%d examples, %.1f s)",
                     self.state.global_step, scores["val_execution_accuracy"], scores["val_valid_sql_rate"],
                     scores["val_generated_examples"], scores["val_generation_seconds"])
        if self.best.consider(self.state.global_step, metrics, lambda d: self.model.save_pretrained(str(d)),
                              self.is_main):
            log.info("step %d: best so far by %s", self.state.global_step, self.best.best_by.value)
        if self.best.should_stop():
            log.info("early stopping: %d evaluations without improvement by %s", self.best.evaluations_since_best,
                     self.best.best_by.value)
            self.control.should_training_stop = True
        return metrics


def training_arguments(cfg: ExperimentConfig, output_dir: Path, device: torch.device, has_eval: bool,
                       accumulation_steps: int, world_size: int = 1) -> TrainingArguments:
    t = cfg.training
    on_gpu = device.type == "cuda"
    half = autocast_dtype(cfg.model, cfg.quantization, device)
    args = TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=1,  # each item is a planned micro-batch
        per_device_eval_batch_size=1,
        gradient_accumulation_steps=accumulation_steps,
        num_train_epochs=t.num_epochs,
        max_steps=t.max_steps,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        optim=t.optimizer,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=t.eval_steps,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        seed=t.seed,
        data_seed=t.seed,
        fp16=half == "float16",
        bf16=half == "bfloat16",
        report_to="none",  # tracking goes through our own callback
        remove_unused_columns=False,
        use_cpu=not on_gpu,
        dataloader_num_workers=0,
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=False,
        # DDP: LoRA leaves no parameter unused, so skip the per-step search for unused ones.
        ddp_find_unused_parameters=False if world_size > 1 else None,
    )
    if world_size == 1 and on_gpu:
        # One process trains on one GPU. On a machine with several, the Trainer would wrap a single-process run in
        # nn.DataParallel: two planned micro-batches per step instead of one and a loss logged at twice its value.
        # Several GPUs go through torchrun (DDP). The Trainer sets its GPU count when devices are first set up,
        # so set that up first; transformers itself pins the count to 1 the same way for model-parallel models.
        _ = args.device
        args._n_gpu = 1
    return args


def checkpoint_complete(path: Path) -> bool:
    """Whether the Trainer finished writing this checkpoint: it writes trainer_state.json last, so a crash or a full
    disk mid-save leaves a checkpoint without one, or with one cut short."""
    try:
        state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and state.get("global_step") == int(path.name.split("-")[-1])


def last_checkpoint(checkpoints_dir: Path) -> str | None:
    """The last complete checkpoint; incomplete ones after it are skipped, named in a warning."""
    found = sorted((p for p in checkpoints_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                   key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for path in found:
        if checkpoint_complete(path):
            return str(path)
        log.warning("training.resume: %s is incomplete (no readable trainer_state.json for its step): skipped", path)
    return None


def run_train(cfg: ExperimentConfig, run_dir: Path, callbacks: tuple[TrainerCallback, ...] = ()) -> dict:
    files = RunFiles(run_dir)
    ctx = dist_context()
    device = resolve_device(cfg.device, ctx.local_rank)
    if ctx.world_size == 1 and device.type == "cuda" and device.index:
        raise ValueError(f"device={cfg.device!r}: the train stage runs on the first visible GPU (the HF Trainer puts "
                         f"batches on cuda:0); pick the GPU with CUDA_VISIBLE_DEVICES={device.index} and device=auto")
    if cfg.training.kernels != Kernels.none:  # refused here, before any work, when they cannot run
        check_kernels(cfg.training.kernels, model_type(cfg.model), device)
    log.info("training numerics: %s; kernels: %s (training.exact_qlora=%s, training.kernels=%s)",
             numerics(cfg.training, cfg.quantization), cfg.training.kernels.value,
             str(cfg.training.exact_qlora).lower(), cfg.training.kernels.value)
    tokenizer = load_tokenizer(cfg.model)
    source = model_source(cfg.model)

    train_examples, train_dropped = tokenize_split(tokenizer, files.split("train"), cfg)
    val_examples, val_dropped = tokenize_split(tokenizer, files.split("val"), cfg)
    if not train_examples:
        raise ValueError(f"no training example fits data_size.max_length={cfg.data_size.max_length} "
                         f"({train_dropped} dropped); raise max_length")
    t = cfg.training
    train_set, per_batch, accumulation = plan_micro_batches(train_examples, t, cfg.data_size.max_length,
                                                            ctx.world_size)
    effective_batch = per_batch * accumulation * ctx.world_size  # a mean when steps are built by token budget
    val_set = make_dataset(val_examples, max(1, round(per_batch)), t) if val_examples else None
    log.info("train: %d examples (%d dropped as longer than %d tokens) in %d micro-batches of %.1f x %d accumulation"
             " x %d ranks = %.1f examples per optimizer step%s; val: %d", len(train_examples), train_dropped,
             cfg.data_size.max_length, len(train_set), per_batch, accumulation, ctx.world_size, effective_batch,
             f" (steps of at most {t.tokens_per_step} padded tokens)" if t.tokens_per_step else "",
             len(val_examples))

    plan = memory_plan_for(cfg, train_set, accumulation, device)
    model = load_base_model(cfg.model, cfg.quantization, device)
    model = add_lora(model, cfg.lora, cfg.quantization, plan.gradient_checkpointing, plan.dequantize_once,
                     t.exact_qlora)
    trainable, total = model.get_nb_trainable_parameters()
    log.info("LoRA: %s trainable of %s parameters", f"{trainable:,}", f"{total:,}")
    throughput = ThroughputCallback()
    generate = val_set is not None and t.eval_generate_examples != 0
    best_by = t.best_by if val_set is not None else BestBy.last
    if best_by != t.best_by:
        log.info("training.best_by=%s but this run has no val examples: adapter/ is the last step's", t.best_by.value)
    advice = out_of_memory_advice(cfg.data_size.max_length, t.per_device_batch_size, t.gradient_accumulation_steps)
    resume_from = last_checkpoint(files.checkpoints_dir) if cfg.training.resume else None
    if cfg.training.resume and resume_from is None:
        log.warning("training.resume=true but %s holds no checkpoint: starting from scratch", files.checkpoints_dir)
    with kernels_for(model, t) as kernels:  # liger's kernels while it trains (model/kernels.py)
        apply_fast_paths(model, t, plan.compile)
        trainer = Text2SqlTrainer(
            model=model,
            args=training_arguments(cfg, files.checkpoints_dir, device, val_set is not None, accumulation,
                                    ctx.world_size),
            train_dataset=train_set,
            eval_dataset=val_set,
            data_collator=PlannedBatchCollator(tokenizer.pad_token_id),
            callbacks=[throughput, ReplanEachEpoch(train_set), EvaluateAtTheEnd(), *callbacks],
            scorer=ValidationScorer(cfg, files, tokenizer, device, ctx) if generate else None,
            best=BestCheckpoint(best_by, t.early_stopping_patience, files.best_adapter_dir, t.resume),
            is_main=ctx.is_main,
            memory_plan=plan,
            advice=advice,
        )
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(NumericProgress())
        started = time.perf_counter()
        try:
            with attention_without_cudnn(device):
                output = trainer.train(resume_from_checkpoint=resume_from)
        finally:
            if trainer.scorer is not None:
                trainer.scorer.close()
    seconds = time.perf_counter() - started

    peaks = gather_to_main(ctx, peak_gpu_memory_gib())
    tokens_this_session = trainer.state.num_input_tokens_seen - throughput.start_tokens  # not those before a resume
    summary = {
        "train_examples": len(train_examples), "train_dropped_too_long": train_dropped,
        "val_examples": len(val_examples), "val_dropped_too_long": val_dropped,
        "model_source": source, "trainable_parameters": trainable, "total_parameters": total,
        "global_steps": output.global_step, "train_seconds": seconds,
        "train_loss_first": throughput.losses[0] if throughput.losses else None,
        "train_loss_last": throughput.losses[-1] if throughput.losses else None,
        "tokens_seen": trainer.state.num_input_tokens_seen,
        "loss_tokens_per_epoch": sum(e.loss_tokens for e in train_examples),
        "resumed_from": resume_from, "examples_per_micro_batch": per_batch, "accumulation_steps": accumulation,
        "world_size": ctx.world_size, "effective_batch": effective_batch, "compiled": plan.compile,
        "memory_plan": trainer.memory_plan.describe(), "memory_plan_predicted_peak_gib": plan.predicted_peak_gib,
        "memory_replans": trainer.replans, "exact_qlora": t.exact_qlora,
        "numerics": numerics(t, cfg.quantization), "kernels": kernels,
        "tokens_per_s": tokens_this_session / seconds if seconds else None,
        # median over logging windows after the first (warm-up), all ranks together
        "tokens_per_s_median": statistics.median(throughput.rates[1:]) if len(throughput.rates) > 1 else None,
        "evaluations": trainer.evaluations, "validation_seconds": trainer.validation_seconds,
        "stopped_early": trainer.best.should_stop(), **trainer.best.summary(),
    }
    if trainer.best.best is not None:
        trainer.state.best_metric = trainer.best.best.score
        trainer.state.best_global_step = trainer.best.best.step
    if torch.cuda.is_available():
        summary["peak_memory_gib"] = max(peaks or [0.0])
        summary.update({f"peak_memory_gib_rank{rank}": peak for rank, peak in enumerate(peaks)})

    def save_adapter(directory: Path) -> None:
        if trainer.best.best is not None:  # the best evaluation's adapter, not the last step's
            shutil.copytree(files.best_adapter_dir, directory, ignore=shutil.ignore_patterns("best.json"))
            log.info("adapter/: step %d's, the best by %s (%.4f)", trainer.best.best.step, trainer.best.best_by.value,
                     trainer.best.best.score)
        else:
            model.save_pretrained(str(directory))
        tokenizer.save_pretrained(str(directory))

    def save() -> None:
        replace_dir(files.adapter_dir, save_adapter)
        write_text(files.trainer_state, json.dumps(dataclasses.asdict(trainer.state), indent=2, sort_keys=True) + "\n")
        write_json(files.train_summary, summary)

    # rank 0 writes; the other ranks wait for it (infer reads the adapter), or fail with its error
    run_on_main(ctx, save)
    return {"adapter": files.adapter_dir, "summary": summary if ctx.is_main else {},
            "tags": {**plan.as_tags("memory_plan.train"), "memory_plan.train.final": trainer.memory_plan.describe(),
                     "model.source": source, "train.kernels": kernels,
                     "train.numerics": numerics(t, cfg.quantization)}}


def run(cfg: ExperimentConfig, files: RunFiles, tracker) -> StageResult:
    """The stage (stages/contract.py): trains with the Trainer's logs going to `tracker` as they come; once the
    result is logged, logs the final adapter as an MLflow model (rank 0; its URI joins the summary as
    `mlflow_model`)."""
    result = run_train(cfg, files.root, callbacks=(MetricsToTracker(tracker),))
    summary = result["summary"]
    metrics, counts = train_summary_logged(summary)

    def log_model() -> dict:
        if not dist_context().is_main:
            return {}
        from experiments.tracking.model_logging import log_final_adapter  # the adapter as an MLflow model too

        logged = log_final_adapter(cfg, files, tracker, step=summary.get("best_step") or summary["global_steps"])
        return {"mlflow_model": logged.to_json()} if logged else {}

    return StageResult(summary=summary, metrics=metrics, params=counts, tags=result.get("tags", {}),
                       artifacts=(Artifact(files.adapter_dir, "adapter"), Artifact(files.train_summary)),
                       then=log_model)
