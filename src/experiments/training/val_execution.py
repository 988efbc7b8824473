"""Execution accuracy on the validation examples while training, and the best checkpoint by it.

At each evaluation the train stage generates SQL for the first `training.eval_generate_examples` val examples (id
order) with the infer stage's own decoding (decoding.generate) and scores it with the evaluator, read-only and
time-limited, on the val examples' own tables or databases. Val is drawn from the dev split and never from test, so
nothing about the test examples can steer which checkpoint is kept. The scores are logged beside eval_loss
(`val_execution_accuracy`, `val_logical_form_accuracy`, `val_valid_sql_rate`, `val_generation_seconds`); the best
adapter by `training.best_by` is kept in checkpoints/best/ (so a resumed run keeps it too) and becomes adapter/.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from experiments.config import BestBy, ExperimentConfig
from experiments.data.prepared import Prepared, prompt_schemas, read_databases, read_prepared, read_tables
from experiments.decoding.generate import Decoding, generate_sql, new_tokens_cap
from experiments.evaluation import score, score_multi_table
from experiments.fileio import replace_dir, write_json
from experiments.runs.distributed import DistContext, broadcast_from_main, gather_to_main, shard, unshard
from experiments.runs.files import RunFiles

log = logging.getLogger(__name__)

VAL_METRICS = ("val_execution_accuracy", "val_logical_form_accuracy", "val_valid_sql_rate")


def validation_examples(files: RunFiles, limit: int | None) -> list[Prepared]:
    """The first `limit` prepared val examples in id order (None = all; the val split, which comes from dev)."""
    examples = read_prepared(files.split("val"))
    return examples if limit is None else examples[:limit]


class ValidationScorer:
    """Generates SQL for the val examples and scores it by execution. In a data-parallel job every rank generates
    for its shard; rank 0 scores and every rank gets the same metrics back."""

    def __init__(self, cfg: ExperimentConfig, files: RunFiles, tokenizer, device: torch.device, ctx: DistContext):
        self.cfg, self.files, self.tokenizer, self.device, self.ctx = cfg, files, tokenizer, device, ctx
        self.examples = validation_examples(files, cfg.training.eval_generate_examples)
        self.new_tokens = new_tokens_cap(cfg, tokenizer, files.split("train"))
        # WikiSQL: the tables (grammar, guidance, scoring); multi-table: the databases (grammar, guidance, scoring)
        self.multi_table = cfg.data.source.multi_table
        self.tables = None if self.multi_table else read_tables(files.tables_jsonl)
        self.databases = read_databases(files.databases_jsonl) if self.multi_table else None
        self.decoding = Decoding.for_run(cfg.inference, tokenizer, files.tables_sqlite,  # as the infer stage decodes
                                         multi_table=self.multi_table)

    @torch.no_grad()
    def __call__(self, model) -> dict[str, float]:
        started = time.perf_counter()
        was_training = model.training
        model.eval()
        mine = shard(self.examples, self.ctx)
        try:
            # Compiled blocks (training.compile) are compiled for training steps: decoding through them would
            # recompile per layer (each layer's KV cache is another guard) until torch's recompile limit, minutes
            # on a CPU. The same blocks run eager here.
            with torch.compiler.set_stance("force_eager"):
                generated, _ = generate_sql(model, self.tokenizer, [p.prompt for p in mine], self.cfg, self.device,
                                            self.new_tokens, progress=False,
                                            schemas=prompt_schemas(mine, self.tables, self.databases),
                                            decoding=self.decoding)
        finally:
            model.train(was_training)
        gathered = gather_to_main(self.ctx, [g.sql for g in generated])
        metrics = self._score(unshard(gathered)) if self.ctx.is_main else None
        metrics = broadcast_from_main(self.ctx, metrics)
        metrics["val_generation_seconds"] = time.perf_counter() - started
        return metrics

    def close(self) -> None:
        self.decoding.close()

    def _score(self, sqls: list[str]) -> dict[str, float]:
        predictions = {p.example.id: sql for p, sql in zip(self.examples, sqls, strict=True)}
        if self.multi_table:  # no logical forms: execution accuracy and valid SQL
            found = score_multi_table([p.example for p in self.examples], self.databases, predictions,
                                      progress=False, **self.cfg.eval.multi_table_scoring(self.cfg.data.source)
                                      ).metrics
            return {"val_execution_accuracy": found["execution_accuracy"],
                    "val_valid_sql_rate": found["valid_sql_rate"], "val_generated_examples": float(len(sqls))}
        scored = score([p.example for p in self.examples], self.tables, predictions, self.files.tables_sqlite,
                       timeout_s=self.cfg.eval.timeout_s, max_rows=self.cfg.eval.max_rows, progress=False).metrics
        return {"val_execution_accuracy": scored["execution_accuracy"],
                "val_logical_form_accuracy": scored["logical_form_accuracy"],
                "val_valid_sql_rate": scored["valid_sql_rate"], "val_generated_examples": float(len(sqls))}


@dataclass
class Best:
    step: int
    score: float
    metrics: dict[str, float]


class BestCheckpoint:
    """Which evaluation was best by `best_by`, with that adapter saved in `directory` (rank 0 writes). Ties in
    execution accuracy go to the lower eval_loss. Survives a resume through `directory`/best.json."""

    def __init__(self, best_by: BestBy, patience: int | None, directory: Path, resume: bool):
        self.best_by, self.patience, self.directory = best_by, patience, directory
        self.best: Best | None = None
        self.evaluations_since_best = 0
        if resume and self.state_file.is_file():
            import json

            self.best = Best(**json.loads(self.state_file.read_text()))
        elif not resume and directory.exists():
            shutil.rmtree(directory)  # a previous run's best is not this run's

    @property
    def state_file(self) -> Path:
        return self.directory / "best.json"

    def _key(self, metrics: dict[str, float]) -> tuple[float, ...]:
        loss = metrics.get("eval_loss", float("inf"))
        if self.best_by == BestBy.execution_accuracy:
            return (metrics["val_execution_accuracy"], -loss)
        return (-loss,)

    def consider(self, step: int, metrics: dict[str, float], save: Callable[[Path], None], is_main: bool) -> bool:
        """Record an evaluation; when it is the best so far, save its adapter. Returns whether it was."""
        if self.best_by == BestBy.last:
            return False
        improved = self.best is None or self._key(metrics) > self._key(self.best.metrics)
        if not improved:
            self.evaluations_since_best += 1
            return False
        score = metrics["val_execution_accuracy"] if self.best_by == BestBy.execution_accuracy else \
            metrics["eval_loss"]
        self.best, self.evaluations_since_best = Best(step=step, score=score, metrics=dict(metrics)), 0
        if is_main:  # adapter and best.json replace the previous best together, never half of one
            best = asdict(self.best)

            def write(directory: Path) -> None:
                save(directory)
                write_json(directory / self.state_file.name, best)

            replace_dir(self.directory, write)
        return True

    def should_stop(self) -> bool:
        return self.patience is not None and self.evaluations_since_best >= self.patience

    def summary(self) -> dict[str, Any]:
        if self.best is None:
            return {"best_by": BestBy.last.value, "best_step": None, "best_score": None}
        return {"best_by": self.best_by.value, "best_step": self.best.step, "best_score": self.best.score,
                "best_metrics": self.best.metrics}


class EvaluateAtTheEnd(TrainerCallback):
    """Evaluates after the last step too, so the final weights compete for the best checkpoint even when the
    step count is not a multiple of eval_steps."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.max_steps and state.global_step >= state.max_steps and args.eval_strategy != "no":
            control.should_evaluate = True
        return control
