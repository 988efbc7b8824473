"""xgrammar vs llguidance for schema-constrained decoding: the same per-table SQL grammar, Mistral's tokenizer,
batched left-padded generation on the tiny model; prints a table and writes JSON.

    pip install xgrammar        # not a project dependency (it brings torch, transformers and triton with it)
    python benchmarks/grammar_libraries.py --torch-threads 1 --out grammar_libraries.json   # CPU, ~3 minutes
    python benchmarks/grammar_libraries.py --libraries llguidance             # the project's library only

For each library, on the bundled sample: (a) tokenizer-info build seconds (once per run); (b) grammar compile
seconds per table (one grammar per test question, uncached, so every compile is timed); (c) masking seconds per
generated token: the library alone (one row replaying the gold SQL's tokens: mask, then accept) and its
transformers processor inside batched greedy generation (batch 32, 48 new tokens, stop at EOS or newline); (d)
correctness: every gold query accepted (tokenised as training does, as the prompt's continuation, then EOS), and
every generated row either stopped with SQL the grammar accepts, that the evaluator parses and that names only
the row's own columns, and padded after its stop, or cut at max_new_tokens holding a valid prefix: in plain
greedy decoding, in greedy decoding with a bonus to EOS and closing quotes after 12 tokens (random weights never
close a string value by themselves), and in beam search (num_beams=4, all four returned). xgrammar runs through
its own processor (`xgrammar.contrib.hf.LogitsProcessor`, one compiled grammar per row); llguidance has none, so
it runs through `experiments.decoding.constraint.SchemaConstraint`. Timings depend on the machine and its load
(medians of --repeats). On a shared 2-core machine, torch's two OpenMP threads made every parallel op wait
~8 ms for the other thread (a 4 x 32000 torch.zeros: 8 ms, 0.01 ms with one thread), which swamped both the model
and the masking; --torch-threads 1 measures them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from sqlglot import exp
from transformers import LogitsProcessor

from experiments.config import ModelConfig, QuantizationConfig, load_config
from experiments.data.official import load_split
from experiments.data.prompt import build_prompt, render_sql
from experiments.data.sources import sample_dir
from experiments.decoding.constraint import SchemaConstraint
from experiments.decoding.generate import clean_generation, left_padded, newline_token_ids
from experiments.decoding.grammar import sql_grammar
from experiments.model.loading import load_base_model, load_tokenizer
from experiments.model.tokenization import encode_prompt, encode_target
from experiments.sql.safe_sql import parse_single_query


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


class _XgrammarLibrary:
    """xgrammar through its own pieces: TokenizerInfo, GrammarCompiler (Lark), contrib.hf.LogitsProcessor."""

    name = "xgrammar"

    def __init__(self, tokenizer, threads: int) -> None:
        import xgrammar

        self.xgr = xgrammar
        self.version = xgrammar.__version__ if hasattr(xgrammar, "__version__") else _version("xgrammar")
        self.tokenizer = tokenizer
        self.threads = threads
        self.info = self.build_info()
        self.compiler = xgrammar.GrammarCompiler(self.info, max_threads=threads)

    def build_info(self):
        return self.xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=len(self.tokenizer))

    def compile_uncached(self, grammar: str):
        return self.xgr.GrammarCompiler(self.info, max_threads=self.threads, cache_enabled=False).compile_lark(grammar)

    def compiled(self, grammar: str):
        return self.compiler.compile_lark(grammar)  # cached by the compiler

    def prepare(self, tables, grammars: list[str]) -> None:
        for grammar in grammars:
            self.compiled(grammar)

    def accepts_ids(self, grammar: str, ids: list[int], complete: bool) -> bool:
        matcher = self.xgr.GrammarMatcher(self.compiled(grammar))
        if not all(matcher.accept_token(i) for i in ids):
            return False
        return matcher.accept_token(self.tokenizer.eos_token_id) if complete else True

    def replay_mask_seconds(self, grammar: str, ids: list[int]) -> float:
        matcher = self.xgr.GrammarMatcher(self.compiled(grammar))
        bitmask = self.xgr.allocate_token_bitmask(1, self.info.vocab_size)
        seconds = 0.0
        for token in ids:
            start = time.perf_counter()
            matcher.fill_next_token_bitmask(bitmask, 0)
            seconds += time.perf_counter() - start
            assert matcher.accept_token(token)
        return seconds

    def processor(self, grammars: list[str], rows_per_prompt: int):
        return [self.xgr.contrib.hf.LogitsProcessor([self.compiled(g) for g in grammars
                                                     for _ in range(rows_per_prompt)])]


class _LlguidanceLibrary:
    """llguidance through this project's SchemaConstraint (llguidance has no transformers processor)."""

    name = "llguidance"

    def __init__(self, tokenizer, threads: int) -> None:
        import llguidance

        self.llg = llguidance
        self.version = llguidance.__version__
        self.tokenizer = tokenizer
        self.constraint = SchemaConstraint(tokenizer, stop_token_ids=[tokenizer.eos_token_id,
                                                                      *newline_token_ids(tokenizer)],
                                           threads=threads)

    def build_info(self):
        import llguidance.hf

        return llguidance.hf.from_tokenizer(self.tokenizer)

    def compile_uncached(self, grammar: str):
        matcher = self.llg.LLMatcher(self.constraint.tokenizer_info, grammar, log_level=0)
        assert not matcher.is_error(), matcher.get_error()
        return matcher

    def prepare(self, tables, grammars: list[str]) -> None:
        self.constraint.prepare(tables)

    def accepts_ids(self, grammar: str, ids: list[int], complete: bool) -> bool:
        matcher = self.llg.LLMatcher(self.constraint.tokenizer_info, grammar, log_level=0)
        if not matcher.consume_tokens(ids):
            return False
        return matcher.consume_token(self.tokenizer.eos_token_id) and matcher.is_stopped() if complete else True

    def replay_mask_seconds(self, grammar: str, ids: list[int]) -> float:
        import llguidance.torch

        matcher = self.llg.LLMatcher(self.constraint.tokenizer_info, grammar, log_level=0)
        bitmask = llguidance.torch.allocate_token_bitmask(1, self.constraint.tokenizer_info.vocab_size)
        seconds = 0.0
        for token in ids:
            start = time.perf_counter()
            llguidance.torch.fill_next_token_bitmask(matcher, bitmask, 0)
            seconds += time.perf_counter() - start
            assert matcher.consume_token(token)
        return seconds

    def processor(self, tables, rows_per_prompt: int):
        del rows_per_prompt  # SchemaConstraint derives it from the batch
        return self.constraint.logits_processor(tables)


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _left_padded(tokenizer, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    return left_padded([encode_prompt(tokenizer, p) for p in prompts], tokenizer.pad_token_id)


def _check_rows(library, tokenizer, sequences: torch.Tensor, prompt_length: int, tables, grammars,
                stop_ids: set[int], rows_per_prompt: int) -> dict:
    """Per-row correctness of one generate call's output, checked with the library's own matcher."""
    counts = {"rows": sequences.shape[0], "stopped": 0, "stopped_accepted": 0, "stopped_parsed_own_columns": 0,
              "cut_at_cap": 0, "cut_valid_prefix": 0, "padded_after_stop": 0, "generated_tokens": 0}
    outputs = []
    for row in range(sequences.shape[0]):
        table, grammar = tables[row // rows_per_prompt], grammars[row // rows_per_prompt]
        tokens = sequences[row, prompt_length:].tolist()
        stop = next((k for k, t in enumerate(tokens) if t in stop_ids), None)
        body = tokens[:stop]
        counts["generated_tokens"] += len(tokens) if stop is None else stop + 1
        sql = clean_generation(tokenizer.decode(body, skip_special_tokens=True))
        outputs.append(sql)
        if stop is None:
            counts["cut_at_cap"] += 1
            counts["cut_valid_prefix"] += library.accepts_ids(grammar, body, complete=False)
            continue
        counts["stopped"] += 1
        counts["padded_after_stop"] += set(tokens[stop + 1:]) <= {tokenizer.pad_token_id}
        ending = [tokens[stop]] if tokens[stop] != tokenizer.eos_token_id else []  # a newline is in the grammar
        if library.accepts_ids(grammar, body + ending, complete=True):
            counts["stopped_accepted"] += 1
        try:
            tree = parse_single_query(sql)
            own = {c.name for c in tree.find_all(exp.Column)} <= set(table.header)
            counts["stopped_parsed_own_columns"] += own
        except Exception:  # counted as not parsed
            pass
    counts["examples"] = outputs[:8]
    return counts


def measure(library, tokenizer, model, examples, tables_by_id, args) -> dict:
    result: dict = {"library": library.name, "version": library.version}
    result["tokenizer_info_s"] = _median_seconds(library.build_info, args.repeats)

    test_tables = [tables_by_id[e.table_id] for e in examples["test"]]
    grammars_per_question = [sql_grammar(t) for t in test_tables]
    times = []
    for grammar in grammars_per_question:
        start = time.perf_counter()
        library.compile_uncached(grammar)
        times.append(time.perf_counter() - start)
    result["compile_s_per_grammar"] = statistics.mean(times)
    result["compile_s_max"] = max(times)
    result["compile_s_for_test_questions"] = sum(times)
    result["grammars_compiled"] = len(times)
    result["distinct_test_tables"] = len(set(t.id for t in test_tables))

    gold_total, gold_ok = 0, 0
    for split in ("train", "dev", "test"):
        for example in examples[split]:
            table = tables_by_id[example.table_id]
            ids = encode_target(tokenizer, build_prompt(example.question, table), render_sql(example.query, table))
            gold_total += 1
            gold_ok += library.accepts_ids(sql_grammar(table), ids, complete=True)
    result["gold_accepted"] = f"{gold_ok}/{gold_total}"

    replay, replay_tokens = 0.0, 0
    for example in examples["test"]:  # the library alone: one row, gold SQL tokens, no model, no logits
        table = tables_by_id[example.table_id]
        ids = encode_target(tokenizer, build_prompt(example.question, table), render_sql(example.query, table))
        replay += library.replay_mask_seconds(sql_grammar(table), ids + [tokenizer.eos_token_id])
        replay_tokens += len(ids) + 1
    result["replay_mask_s_per_token"] = replay / replay_tokens

    batch = examples["test"][:args.batch]
    tables = [tables_by_id[e.table_id] for e in batch]
    grammars = [sql_grammar(t) for t in tables]
    prompts = [build_prompt(e.question, t) for e, t in zip(batch, tables, strict=True)]
    library.prepare(tables, grammars)  # compiled outside the timed generation, as a run caches per table

    walls, per_token = [], []
    for _ in range(args.repeats):
        timer = _Timed([])
        checked, sequences = _scenario(library, tokenizer, model, prompts, tables, grammars, args, finish=False,
                                       timer=timer)
        walls.append(checked["generate_s"])
        per_token.append(timer.seconds / checked["generated_tokens"])
    result["generate_s"] = statistics.median(walls)
    result["mask_s_per_token"] = statistics.median(per_token)
    result["greedy"] = checked
    result["greedy_sequences"] = sequences
    result["greedy_finishing"], _ = _scenario(library, tokenizer, model, prompts, tables, grammars, args,
                                              finish=True)
    few = args.beam_prompts
    result["beam_search"], _ = _scenario(library, tokenizer, model, prompts[:few], tables[:few], grammars[:few],
                                         args, finish=True, num_beams=args.beams, num_return_sequences=args.beams)
    return result


class _FinishWithin(LogitsProcessor):
    """Stands in for a trained model's wish to stop (random weights never close a string value): after `free`
    new tokens, a growing bonus to EOS and to closing quotes. It runs before the grammar's processor, which
    still decides what is allowed."""

    def __init__(self, tokenizer, free: int, prompt_length: int) -> None:
        vocab = tokenizer.get_vocab()
        self.quotes = [vocab[t] for t in ("'", "▁'")]
        self.eos, self.free, self.prompt_length = tokenizer.eos_token_id, free, prompt_length

    def __call__(self, input_ids, scores):
        late = input_ids.shape[1] - self.prompt_length - self.free
        if late <= 0:
            return scores
        scores = scores.clone()
        scores[:, self.quotes] += 3.0 * late
        scores[:, self.eos] += 5.0 * late
        return scores


class _Timed(LogitsProcessor):
    """The library's processors, timed together (synchronising a GPU, so that the time is what they add)."""

    def __init__(self, processors: list) -> None:
        self.processors, self.seconds = processors, 0.0

    def __call__(self, input_ids, scores):
        if scores.is_cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        for processor in self.processors:
            scores = processor(input_ids, scores)
        if scores.is_cuda:
            torch.cuda.synchronize()
        self.seconds += time.perf_counter() - start
        return scores


def _scenario(library, tokenizer, model, prompts, tables, grammars, args, finish: bool, timer: _Timed | None = None,
              **decoding) -> tuple[dict, list | None]:
    """One batched, left-padded generate call under the library's processor, and its rows checked."""
    input_ids, attention = _left_padded(tokenizer, prompts)
    input_ids, attention = input_ids.to(model.device), attention.to(model.device)
    stop_ids = [tokenizer.eos_token_id, *newline_token_ids(tokenizer)]
    rows_per_prompt = decoding.get("num_return_sequences", 1)
    timer = timer or _Timed([])
    timer.processors = library.processor(tables if library.name == "llguidance" else grammars, rows_per_prompt)
    processors = [timer]
    if finish:
        processors = [_FinishWithin(tokenizer, free=12, prompt_length=input_ids.shape[1]), *processors]
    try:
        start = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=args.new_tokens,
                                 eos_token_id=stop_ids, pad_token_id=tokenizer.pad_token_id, do_sample=False,
                                 logits_processor=processors, **decoding)
    except Exception as error:  # e.g. a processor that cannot follow beam search
        return {"works": False, "error": f"{type(error).__name__}: {str(error)[:200]}"}, None
    seconds = time.perf_counter() - start
    checked = _check_rows(library, tokenizer, out.cpu(), input_ids.shape[1], tables, grammars, set(stop_ids),
                          rows_per_prompt)
    checked["generate_s"] = seconds
    checked["works"] = (checked["stopped_accepted"] == checked["stopped_parsed_own_columns"] == checked["stopped"]
                        == checked["padded_after_stop"] and checked["cut_valid_prefix"] == checked["cut_at_cap"])
    return checked, out.tolist()


def _ok(checked: dict) -> str:
    if "error" in checked:
        return "error"
    good = min(checked["stopped_accepted"], checked["stopped_parsed_own_columns"]) + checked["cut_valid_prefix"]
    return f"{good}/{checked['rows']}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--libraries", nargs="+", default=["xgrammar", "llguidance"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--beam-prompts", type=int, default=4)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="library threads (masks, compile)")
    parser.add_argument("--torch-threads", type=int, help="torch's CPU threads (1 on a shared machine: with 2 "
                        "OpenMP threads on 2 busy cores every parallel op waited ~8 ms for the other thread)")
    parser.add_argument("--device", default="cpu", help="where the tiny model runs (cpu, cuda)")
    parser.add_argument("--tokenizer", help="a tokenizer.model file (default: mistral-common's)")
    parser.add_argument("--out", type=Path, default=Path("grammar_libraries.json"))
    args = parser.parse_args()

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    tokenizer = load_tokenizer(ModelConfig(tokenizer_path=args.tokenizer))
    tiny = load_config(["experiment=smoke"]).model
    model = load_base_model(tiny, QuantizationConfig(), torch.device(args.device)).eval()
    splits = {s: load_split(sample_dir(), s) for s in ("train", "dev", "test")}
    examples = {s: d.examples for s, d in splits.items()}
    tables_by_id = {tid: t for d in splits.values() for tid, t in d.tables.items()}

    input_ids, attention = _left_padded(tokenizer, [build_prompt(e.question, tables_by_id[e.table_id])
                                                    for e in examples["test"][:args.batch]])
    input_ids, attention = input_ids.to(model.device), attention.to(model.device)

    @torch.inference_mode()
    def unconstrained_generate() -> None:  # every row runs to the cap: the model's own cost, for scale
        model.generate(input_ids=input_ids, attention_mask=attention, max_new_tokens=args.new_tokens,
                       min_new_tokens=args.new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)

    unconstrained_generate()  # warm-up
    unconstrained = _median_seconds(unconstrained_generate, args.repeats)

    libraries = {"xgrammar": _XgrammarLibrary, "llguidance": _LlguidanceLibrary}
    results = [measure(libraries[name](tokenizer, args.threads), tokenizer, model, examples, tables_by_id, args)
               for name in args.libraries]
    if len(results) == 2:
        same = results[0].pop("greedy_sequences") == results[1].pop("greedy_sequences")
    else:
        same = None
        results[0].pop("greedy_sequences")
    report = {"batch": args.batch, "new_tokens": args.new_tokens, "threads": args.threads, "device": args.device,
              "torch_threads": torch.get_num_threads(),
              "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
              "torch": torch.__version__, "unconstrained_generate_s": unconstrained,
              "identical_greedy_outputs": same, "results": results}
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False))

    head = (f"{'library':11} {'version':8} {'tok-info s':>10} {'compile ms':>10} {'max ms':>7} "
            f"{'lib us/tok':>10} {'proc us/tok':>11} {'gen s':>6} {'gold ok':>8} {'greedy ok':>10} "
            f"{'finishing ok':>12} {'beams ok':>9}")
    print(head)
    print("-" * len(head))
    for r in results:
        g, f, b = r["greedy"], r["greedy_finishing"], r["beam_search"]
        print(f"{r['library']:11} {r['version']:8} {r['tokenizer_info_s']:10.2f} "
              f"{r['compile_s_per_grammar'] * 1e3:10.1f} {r['compile_s_max'] * 1e3:7.1f} "
              f"{r['replay_mask_s_per_token'] * 1e6:10.0f} {r['mask_s_per_token'] * 1e6:11.0f} "
              f"{r['generate_s']:6.2f} {r['gold_accepted']:>8} {_ok(g):>10} {_ok(f):>12} {_ok(b):>9}")
    print(f"\nunconstrained generate (every row to the cap): {unconstrained:.2f} s; identical greedy outputs: {same}")
    print("ok = rows that stopped with accepted SQL (parsed by the evaluator, own columns) + rows cut at the cap "
          "holding a valid prefix, of all rows; finishing = with a bonus to EOS and closing quotes after 12 tokens")
    for r in results:
        for name in ("greedy", "greedy_finishing", "beam_search"):
            if "error" in r[name]:
                print(f"{r['library']} {name}: {r[name]['error']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
