"""What a run logs to MLflow, under one naming scheme whose prefixes group in the UI's metric sections:

- `test/...`: the scored test split, the run's headline (`test/execution_accuracy` and its 95% interval; with a
  test suite, `test/test_suite_accuracy` and its interval too);
- `val/...`: the validation split while training (`val/loss`, `val/execution_accuracy`, ...), one point per eval;
- `train/...`: the optimisation curves (`train/loss`, `train/learning_rate`, `train/tokens_per_s`, ...);
- `infer/...`: generation on the test split (tokens/s, grammar and guidance work);
- `time/...`: seconds (`time/train_s` for each stage, `time/val_generation_s`, ...);
- `category/...`: the test examples by what went wrong (`category/correct`, `category/wrong_where`, ...).

Counts that are not curves (examples, parameters, steps, batch shape) are params under `count/...`. The JSON files
of a run directory keep their own keys; only what goes to the tracker is named here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

HEADLINE = "test/execution_accuracy"

# The Trainer's own log keys (and ThroughputCallback's, val_execution.ValidationScorer's)
_TRAINER_LOG = {
    "loss": "train/loss", "grad_norm": "train/grad_norm", "learning_rate": "train/learning_rate",
    "epoch": "train/epoch", "num_input_tokens_seen": "train/tokens_seen", "tokens_per_s": "train/tokens_per_s",
    "peak_memory_gib": "train/peak_memory_gib", "train_loss": "train/loss_mean", "total_flos": "train/total_flos",
    "eval_loss": "val/loss", "eval_runtime": "time/val_loss_s",
    "val_generation_seconds": "time/val_generation_s",
}
# Repeats of what another name already holds (the Trainer's rates of its own runtime; time/train_s is the stage)
_TRAINER_LOG_DROPPED = {"eval_samples_per_second", "eval_steps_per_second", "train_runtime",
                        "train_samples_per_second", "train_steps_per_second", "train_tokens_per_second",
                        "val_generated_examples"}

_TRAIN_SUMMARY = {"train_loss_first": "train/loss_first", "train_loss_last": "train/loss_last",
                  "tokens_per_s": "train/tokens_per_s_mean", "tokens_per_s_median": "train/tokens_per_s_median",
                  "memory_plan_predicted_peak_gib": "train/predicted_peak_memory_gib",
                  "validation_seconds": "time/val_generation_total_s", "best_score": "val/best_score"}
_TRAIN_COUNTS = ("train_examples", "train_dropped_too_long", "val_examples", "val_dropped_too_long",
                 "trainable_parameters", "total_parameters", "global_steps", "tokens_seen", "loss_tokens_per_epoch",
                 "examples_per_micro_batch", "accumulation_steps", "world_size", "effective_batch", "evaluations",
                 "best_step", "memory_replans")

_INFER_SUMMARY = {"infer_seconds": "time/generation_s", "grammar_tokenizer_seconds": "time/grammar_tokenizer_s",
                  "grammar_compile_seconds": "time/grammar_compile_s", "grammar_mask_seconds": "time/grammar_mask_s",
                  "guidance_seconds": "time/guidance_s", "scope_seconds": "time/scope_check_s",
                  "memory_plan_predicted_peak_gib": "infer/predicted_peak_memory_gib"}
_INFER_COUNTS = {"examples": "count/test_examples", "max_new_tokens": "count/max_new_tokens",
                 "grammars_compiled": "count/grammars_compiled", "generated_tokens": "count/generated_tokens",
                 "scope_rejected_tokens": "count/scope_rejected_tokens", "scope_dead_ends": "count/scope_dead_ends",
                 "grammar_forced_ends": "count/grammar_forced_ends", "prefilled_in_chunks": "count/prefilled_in_chunks",
                 "grammar_closing_steers": "count/grammar_closing_steers", "decode_steps": "count/decode_steps"}

_EVAL_COUNTS = {"n": "count/scored_examples", "missing_predictions": "count/missing_predictions",
                "gold_errors": "count/gold_errors", "unknown_prediction_ids": "count/unknown_prediction_ids",
                "test_suite_databases": "count/test_suite_databases",
                "test_suite_gold_errors": "count/test_suite_gold_errors"}


def _numbers(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def trainer_log_metrics(logs: Mapping[str, Any]) -> dict[str, Any]:
    """A Trainer log entry (one step's curves) under this scheme; a key not known here keeps its name under
    `train/`, so nothing the Trainer adds is lost."""
    out: dict[str, Any] = {}
    for key, value in _numbers(logs).items():
        if key in _TRAINER_LOG_DROPPED:
            continue
        if key in _TRAINER_LOG:
            out[_TRAINER_LOG[key]] = value
        elif key.startswith("val_"):
            out[f"val/{key.removeprefix('val_')}"] = value
        elif key.startswith("eval_"):
            out[f"val/{key.removeprefix('eval_')}"] = value
        else:
            out[f"train/{key.removeprefix('train_')}"] = value
    return out


def _split(values: Mapping[str, Any], prefix: str, renamed: Mapping[str, str], counts: Mapping[str, str],
           dropped: frozenset[str] = frozenset()) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, params) of a stage's numbers: counts to their params, the rest to metrics under their new name
    or under `prefix`; `dropped` repeats what another name holds."""
    metrics: dict[str, Any] = {}
    params: dict[str, Any] = {}
    for key, value in _numbers(values).items():
        if key in counts:
            params[counts[key]] = value
        elif key not in dropped:
            metrics[renamed.get(key, f"{prefix}{key}")] = value
    return metrics, params


def train_summary_logged(summary: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, params) of the train stage's summary; its seconds are the stage's `time/train_s`."""
    return _split(summary, "train/", _TRAIN_SUMMARY, {key: f"count/{key}" for key in _TRAIN_COUNTS},
                  dropped=frozenset({"train_seconds"}))


def infer_summary_logged(summary: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, params) of the infer stage's summary."""
    return _split(summary, "infer/", _INFER_SUMMARY, _INFER_COUNTS)


def eval_logged(metrics: Mapping[str, Any], intervals: Mapping[str, float]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(metrics, params) of the scored test split: `test/...` with the intervals, `category/...`, the scorer's
    seconds as `time/scoring_s`, and the example counts as params."""
    out, params = _split({**metrics, **intervals}, "test/", {"eval_seconds": "time/scoring_s"}, _EVAL_COUNTS)
    out.update({f"category/{k}": v for k, v in _numbers(metrics.get("categories") or {}).items()})
    for breakdown in ("by_hardness", "by_difficulty"):  # multi-table: accuracy per Spider level / BIRD difficulty
        for level, value in (metrics.get(breakdown) or {}).items():
            if isinstance(value, dict) and isinstance(value.get("execution_accuracy"), int | float):
                out[f"test/{breakdown[3:]}/{level}"] = value["execution_accuracy"]
    return out, params


def stage_seconds(stage: str) -> str:
    return f"time/{stage}_s"
