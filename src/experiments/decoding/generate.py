"""Batched generation of SQL from prepared prompts: the one decoding path of the infer stage and of the train
stage's validation.

Prompts are encoded exactly as training encoded them, sorted by length and generated in large left-padded batches;
each sequence stops at EOS or at a newline (the SQL is one line). With inference.constrain=grammar every row is
masked by its own table's or database's grammar (decoding.constraint); with inference.execution_guided=k each
prompt gets k candidates and the first that executes on its question's table or database is kept
(decoding.guided); both at once work too.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from experiments.config import Constrain, ExperimentConfig, InferenceConfig
from experiments.data.prepared import read_prepared
from experiments.data.records import Table
from experiments.data.schema import Database
from experiments.decoding.constraint import SchemaConstraint
from experiments.decoding.guided import CandidateRunner, DatabaseRunner, TableRunner, choose
from experiments.decoding.prefill import CACHE_ARGUMENT, chunked_prefill, prefill_chunk_count
from experiments.decoding.token_bytes import SPECIAL_MARKER, token_bytes
from experiments.model.decode_attention import packed_gqa_decoding
from experiments.model.loading import attention_without_cudnn
from experiments.model.tokenization import encode_prompt, encode_target

TARGET_MARGIN_TOKENS = 8


def newline_token_ids(tokenizer) -> list[int]:
    """Ids of every token that writes a newline (SentencePiece's byte token <0x0A>, byte-level BPE's 'Ċ', 'ĊĊ', ...),
    read from the tokens' bytes as the grammar reads them (decoding.token_bytes)."""
    return [index for index, spelled in enumerate(token_bytes(tokenizer))
            if b"\n" in spelled and not spelled.startswith(SPECIAL_MARKER)]


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


@dataclass(frozen=True)
class Generated:
    """One prompt's SQL. With execution guidance: which of its candidates was kept (0 = the model's top), why
    (guided.EXECUTES or guided.NONE_EXECUTES), and the top candidate's SQL when another one was kept."""

    sql: str
    candidate: int = 0
    guided_reason: str | None = None
    top_sql: str | None = None

    def to_json(self, example_id: str) -> dict[str, Any]:
        row: dict[str, Any] = {"id": example_id, "sql": self.sql}
        if self.guided_reason is not None:
            row.update(candidate=self.candidate, guided_reason=self.guided_reason)
            if self.top_sql is not None:
                row["top_sql"] = self.top_sql
        return row


@dataclass
class Decoding:
    """How a run decodes, beyond InferenceConfig's numbers: the grammar constraint (None = unconstrained) and, for
    execution-guided decoding, where the candidates are tried (the question's WikiSQL table, or its database)."""

    constraint: SchemaConstraint | None = None
    runner: CandidateRunner | None = None
    guidance_seconds: float = 0.0
    # The inference plan's cache and compile (memory_plan.InferencePlan): a static KV cache, and compiled decode steps
    # (transformers compiles the decoding forward with CUDA graphs; a GPU only, it skips compiling elsewhere).
    static_cache: bool = False
    compile: bool = False
    batch_size: int | None = None  # the plan's prompts per batch (None: inference.batch_size)
    cudnn_attention: bool = False  # let SDPA pick cuDNN attention on a GPU (model.loading.attention_without_cudnn)
    packed_gqa: bool = True  # decode steps on grouped KV heads without per-head copies (model.decode_attention)
    # a large batch of one-row-per-prompt decoding is prefilled in length-sorted slices of at least this many rows
    # (decoding.prefill; 0: one prefill per batch); prefilled_in_chunks counts the batches that were
    prefill_chunk_rows: int = 64
    prefilled_in_chunks: int = 0
    # decode steps over all batches: a batch runs until its longest row ends, so one row looping to the token cap
    # costs every row of its batch the steps to the cap (what constrained decoding's wall time compares)
    decode_steps: int = 0
    # the sliced prefill's cache has room for the answer, written in place (decoding.prefill.PreallocatedLayer); false
    # only to measure what that buys (benchmarks/profile_generation.py)
    preallocated_cache: bool = True
    # greedy decoding fills the grammar's next masks while the model runs (decoding.constraint); false only to
    # measure what that buys (benchmarks/constrained_overhead.py)
    overlap_grammar: bool = True

    @classmethod
    def for_run(cls, inference: InferenceConfig, tokenizer, tables_sqlite: Path, plan=None, *,
                multi_table: bool = False) -> Decoding:
        """The run's decoding; with `multi_table` generate_sql's `schemas` are databases: the grammar is each
        database's (its self-check runs here, before any model loads) and execution guidance runs candidates on each
        question's own database file, else on WikiSQL's `tables_sqlite`."""
        stop_ids = stop_token_ids(tokenizer, inference)
        constraint = SchemaConstraint(tokenizer, stop_token_ids=stop_ids, multi_table=multi_table,
                                      check_scope=inference.check_scope) \
            if inference.constrain == Constrain.grammar else None
        runner: CandidateRunner | None = None
        if inference.execution_guided:
            runner = DatabaseRunner.open() if multi_table else TableRunner.open(tables_sqlite)
        if plan is None:
            return cls(constraint, runner)
        return cls(constraint, runner, static_cache=plan.static_cache, compile=plan.compile,
                   batch_size=plan.batch_size)

    def prompts_per_batch(self, inference: InferenceConfig) -> int:
        return self.batch_size or inference.batch_size

    def close(self) -> None:
        if self.runner is not None:
            self.runner.close()

    def summary(self) -> dict[str, Any]:
        """What decoding cost, for infer_summary.json and the tracker."""
        out: dict[str, Any] = {}
        if self.constraint is not None:
            stats = self.constraint.stats
            out.update(grammar_tokenizer_seconds=stats.tokenizer_seconds, grammar_compile_seconds=stats.compile_seconds,
                       grammars_compiled=stats.grammars, grammar_mask_seconds=stats.mask_seconds,
                       grammar_masked_tokens=stats.masked_tokens, grammar_rejected_tokens=stats.rejected_tokens,
                       grammar_overlapped_steps=stats.overlapped_steps, grammar_forced_ends=stats.forced_ends,
                       grammar_closing_steers=stats.closing_steers)
            if constraint_scoped(self.constraint):
                out.update(scope_checks=stats.scope_checks, scope_rejected_tokens=stats.scope_rejected_tokens,
                           scope_dead_ends=stats.scope_dead_ends, scope_seconds=stats.scope_seconds)
        if self.runner is not None:
            out["guidance_seconds"] = self.guidance_seconds
        if self.prefilled_in_chunks:
            out["prefilled_in_chunks"] = self.prefilled_in_chunks
        if self.decode_steps:
            out["decode_steps"] = self.decode_steps
        return out


def constraint_scoped(constraint: SchemaConstraint) -> bool:
    """Whether the constraint checked name scoping (multi-table data with inference.check_scope)."""
    return constraint.check_scope and constraint.multi_table


def left_padded(encoded: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and attention mask of a batch padded on the left, so every prompt ends where generation starts."""
    longest = max(len(ids) for ids in encoded)
    input_ids = torch.full((len(encoded), longest), pad_id, dtype=torch.long)
    attention = torch.zeros((len(encoded), longest), dtype=torch.long)
    for row, ids in enumerate(encoded):
        input_ids[row, longest - len(ids):] = torch.tensor(ids, dtype=torch.long)
        attention[row, longest - len(ids):] = 1
    return input_ids, attention


def stop_token_ids(tokenizer, inference: InferenceConfig) -> list[int]:
    """EOS, and every newline token when the SQL is one line (inference.stop_at_newline)."""
    return [tokenizer.eos_token_id] + (newline_token_ids(tokenizer) if inference.stop_at_newline else [])


@torch.inference_mode()
def generate_sql(model, tokenizer, prompts: list[str], cfg: ExperimentConfig, device: torch.device,
                 new_tokens_cap: int, progress: bool = True, min_new_tokens: int = 0,
                 schemas: Sequence[Table] | Sequence[Database] | None = None,
                 decoding: Decoding | None = None) -> tuple[list[Generated], int]:
    """SQL per prompt (input order) and the number of generated tokens (all candidates counted).

    `schemas` (one per prompt: its WikiSQL table, or its database on multi-table data) are needed by the grammar
    constraint and execution guidance in `decoding`. With
    inference.execution_guided = k, each prompt gets k candidates (beam search, or sampling when temperature > 0,
    best first) and guided.choose keeps one. `min_new_tokens` exists for benchmarks: random weights never stop by
    themselves, so both paths are made to generate the same number of tokens (not with a grammar, which must be
    free to end)."""
    inf = cfg.inference
    decoding = decoding or Decoding()
    if (decoding.constraint is not None or decoding.runner is not None) and schemas is None:
        raise ValueError("constrained or execution-guided decoding needs the table or database of each prompt")
    if decoding.constraint is not None and min_new_tokens:
        raise ValueError("min_new_tokens cannot be combined with a grammar: a complete query must be free to end")
    encoded = [encode_prompt(tokenizer, p) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]), reverse=True)
    stop_ids = stop_token_ids(tokenizer, inf)
    k = inf.execution_guided if decoding.runner is not None else 1
    outputs: list[Generated] = [Generated("")] * len(prompts)
    generated_tokens = 0
    pad_id = tokenizer.pad_token_id
    per_batch = decoding.prompts_per_batch(inf)
    batches = [order[i:i + per_batch] for i in range(0, len(order), per_batch)]  # k rows per prompt
    cache_options = static_cache_options(decoding, max((len(e) for e in encoded), default=0) + new_tokens_cap)
    for batch in tqdm(batches, desc="generating", unit="batch", disable=not progress):
        real = len(batch)
        if decoding.compile:  # compiled decode steps are shaped by the batch: every batch as big as the first
            batch = batch + [batch[-1]] * (per_batch - real)
        input_ids, attention = left_padded([encoded[i] for i in batch], pad_id)
        longest = input_ids.shape[1]
        options: dict[str, Any] = {"do_sample": True, "temperature": inf.temperature} if inf.temperature > 0 else \
            {"do_sample": False}
        options.update(cache_options)
        if k > 1:
            options["num_return_sequences"] = k
            if inf.temperature > 0:
                options.update(output_scores=True, return_dict_in_generate=True)
            else:
                options.update(num_beams=k, early_stopping=True)
        else:
            options["num_beams"] = 1  # one row per prompt, whatever the model's generation config says
        if decoding.constraint is not None:
            options["logits_processor"] = decoding.constraint.logits_processor(
                [schemas[i] for i in batch], greedy=decoding.overlap_grammar and k == 1 and inf.temperature <= 0,
                max_new_tokens=new_tokens_cap)
        # beams and k candidates expand the batch inside generate, a static cache is generate's own: one prefill
        chunks = prefill_chunk_count(real, decoding.prefill_chunk_rows) if k == 1 and not decoding.static_cache else 1
        with contextlib.nullcontext() if decoding.cudnn_attention else attention_without_cudnn(device), \
                packed_gqa_decoding(model) if decoding.packed_gqa else contextlib.nullcontext():
            input_ids, attention = input_ids.to(device), attention.to(device)
            room = new_tokens_cap if decoding.preallocated_cache else None
            prefilled = chunked_prefill(model, input_ids, attention, chunks, room) if chunks > 1 else None
            if prefilled is not None:
                options[CACHE_ARGUMENT] = prefilled
                decoding.prefilled_in_chunks += 1
            out = model.generate(input_ids=input_ids, attention_mask=attention,
                                 max_new_tokens=new_tokens_cap, min_new_tokens=min_new_tokens or None,
                                 eos_token_id=stop_ids, pad_token_id=pad_id, **options)
            del prefilled, options  # the batch's KV cache goes before the next batch is prefilled
        sequences = out.sequences if hasattr(out, "sequences") else out
        new_tokens = sequences[:real * k, longest:].cpu()  # the filler rows of a padded last batch are dropped
        decoding.decode_steps += new_tokens.shape[1]
        batch = batch[:real]
        texts = []
        for row in range(new_tokens.shape[0]):
            tokens = new_tokens[row].tolist()
            stop = next((j for j, t in enumerate(tokens) if t in stop_ids), len(tokens))
            generated_tokens += min(stop + 1, len(tokens))
            texts.append(clean_generation(tokenizer.decode(tokens[:stop], skip_special_tokens=True)))
        if k == 1:
            for row, i in enumerate(batch):
                outputs[i] = Generated(texts[row])
            continue
        candidates = [texts[row * k:(row + 1) * k] for row in range(len(batch))]
        if inf.temperature > 0:  # sampled candidates come unordered: best first by sequence log-probability
            candidates = _by_score(candidates, model, out, k)
        started = time.perf_counter()
        choices = choose(candidates, [schemas[i] for i in batch], decoding.runner)
        decoding.guidance_seconds += time.perf_counter() - started
        for row, (i, choice) in enumerate(zip(batch, choices, strict=True)):
            kept = candidates[row][choice.index]
            outputs[i] = Generated(kept, choice.index, choice.reason,
                                   candidates[row][0] if choice.index else None)
    return outputs, generated_tokens


def static_cache_options(decoding: Decoding, max_cache_len: int) -> dict[str, Any]:
    """generate() options for the plan's cache: a static KV cache sized once for the longest prompt + the new tokens
    (one shape for every batch, so compiled decode steps are compiled once) and, unless the plan compiles, no
    compiling (generate would compile a static cache's decode steps on a GPU by itself)."""
    if not decoding.static_cache:
        return {}
    options: dict[str, Any] = {"cache_implementation": "static", "max_cache_len": max_cache_len}
    if decoding.compile:
        from transformers import CompileConfig

        options["compile_config"] = CompileConfig(fullgraph=False, dynamic=False, mode="reduce-overhead")
    else:
        options["disable_compile"] = True
    return options


def _by_score(candidates: list[list[str]], model, out, k: int) -> list[list[str]]:
    """Each prompt's sampled candidates sorted by their sequence log-probability, best first."""
    scores = model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
    totals = torch.where(torch.isfinite(scores), scores, torch.zeros_like(scores)).sum(dim=1).tolist()
    ranked = []
    for row, texts in enumerate(candidates):
        order = sorted(range(k), key=lambda j: -totals[row * k + j])
        ranked.append([texts[j] for j in order])
    return ranked
