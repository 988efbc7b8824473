"""Where generation's time goes under the infer stage's `auto` plan: the prefill of one left-padded batch of every
prompt against its decode steps, what prefilling in length-sorted chunks would save (fewer pad tokens), and the
top CUDA operators of one prefill (torch.profiler).

The GPU benchmark's batch-size series (1,000 prompts in 8 batches 23.1 s, in 1 batch 10.0 s) fits a decode step of
~50 ms whatever the batch and a prefill of ~7.5 s, far above the ~2 s of matmul work in ~110,000 prompt tokens; this
measures that split directly, on the same model, adapter and prompts.

    python benchmarks/profile_generation.py --model /tmp/m7b --out gen_profile.json    # on the GPU
    python benchmarks/profile_generation.py --dry-run --prompts 16                      # CPU, tiny model
    python benchmarks/profile_generation.py --set model=smollm2_135m model.gguf_file=F --parts chunked prealloc
                                                      # real weights: do the sliced prefill's tokens agree?
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))
from gpu_benchmark import bench_examples, generation_model, preset_config, release, save_adapter, sync  # noqa: E402

from experiments.decoding.generate import Decoding, generate_sql, left_padded  # noqa: E402
from experiments.model.inference_model import inference_plan_for  # noqa: E402
from experiments.model.loading import attention_without_cudnn, load_tokenizer, resolve_device  # noqa: E402
from experiments.model.tokenization import encode_prompt  # noqa: E402


def timed(work, repeats: int) -> float:
    """Median wall seconds of `work()` over `repeats` runs, after one warm-up run."""
    work()
    sync()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        sync()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def prefill(model, encoded: list[list[int]], pad_id: int, device: torch.device) -> None:
    """One forward over the left-padded batch with a KV cache, keeping the last position's logits (as generate)."""
    input_ids, attention = left_padded(encoded, pad_id)
    with torch.inference_mode(), attention_without_cudnn(device):
        model(input_ids=input_ids.to(device), attention_mask=attention.to(device), use_cache=True, logits_to_keep=1)


def lever(report: dict[str, Any], generated, repeats: int, prefix: str, what: str,
          settings: list[tuple[str, Decoding]]) -> None:
    """Times `generated(decoding)` without and with a lever (`settings`: label and Decoding of each), with the
    batches prefilled in slices and the share of prompts both give the same SQL."""
    texts: dict[str, list] = {}  # each setting's SQL of its last timed run
    for label, run in settings:
        name = f"{prefix}_{label}_{what}"
        report[f"{name}_seconds"] = timed(lambda run=run, label=label: texts.__setitem__(label, generated(run)),
                                          repeats)
        report[f"{name}_batches_sliced"] = run.prefilled_in_chunks
    report[f"{settings[1][0]}_{what}_same_sql"] = same_sql(*texts.values())


def same_sql(first, second) -> float:
    """The share of prompts two runs of generate_sql gave the same SQL."""
    return sum(a.sql == b.sql for a, b in zip(first, second, strict=True)) / len(first)


PARTS = ("prefill", "steps", "gqa", "chunked", "prealloc", "static", "profile")  # prefill (and its chunks); prefill
# vs decode steps; the decode attention on repeated vs packed KV heads; generate_sql with one prefill vs length-sorted
# slices (decoding/prefill.py); the sliced prefill's cache concatenated vs preallocated; a static KV cache;
# torch.profiler tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="local Mistral directory (e.g. from make_random_mistral.py)")
    parser.add_argument("--preset", default="baseline")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides, e.g. model=smollm2_135m model.gguf_file=F (real weights)")
    parser.add_argument("--prompts", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--chunks", type=int, nargs="*", default=[2, 4, 8], help="length-sorted prefill chunks")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS, help="what to measure")
    parser.add_argument("--dry-run", action="store_true", help="CPU + tiny model: exercise the code, not a result")
    parser.add_argument("--out", type=Path, default=Path("gen_profile.json"))
    args = parser.parse_args()
    device = resolve_device("cpu" if args.dry_run else "auto")
    cfg = preset_config(args.preset, args.model, args.dry_run, args.set)
    tokenizer = load_tokenizer(cfg.model)
    prompts = [p.prompt for p in bench_examples(args.prompts)]
    encoded = sorted((encode_prompt(tokenizer, p) for p in prompts), key=len, reverse=True)
    plan = inference_plan_for(cfg, tokenizer, prompts, args.tokens, device)
    report: dict[str, Any] = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
                              "plan": plan.describe(), "prompts": len(prompts),
                              "real_prompt_tokens": sum(map(len, encoded)),
                              "padded_prompt_tokens": len(encoded) * len(encoded[0])}
    with tempfile.TemporaryDirectory() as tmp:
        model = generation_model(cfg, device, save_adapter(cfg, device, Path(tmp)), plan)
    pad_id = tokenizer.pad_token_id
    release()
    if "prefill" in args.parts:
        report["prefill_seconds"] = timed(lambda: prefill(model, encoded, pad_id, device), args.repeats)
    for chunks in args.chunks if "prefill" in args.parts else []:
        size = -(-len(encoded) // chunks)
        parts = [encoded[i:i + size] for i in range(0, len(encoded), size)]
        report[f"prefill_{chunks}_chunks_seconds"] = timed(
            lambda parts=parts: [prefill(model, part, pad_id, device) for part in parts], args.repeats)
        report[f"prefill_{chunks}_chunks_padded_tokens"] = sum(len(p) * len(p[0]) for p in parts)
    decoding = Decoding(batch_size=plan.batch_size)
    for tokens in (1, args.tokens) if "steps" in args.parts else []:
        report[f"generate_{tokens}_seconds"] = timed(lambda tokens=tokens: generate_sql(
            model, tokenizer, prompts, cfg, device, tokens, progress=False, min_new_tokens=tokens,
            decoding=decoding), args.repeats)
    if "steps" in args.parts:
        report["decode_step_ms"] = 1000 * (report[f"generate_{args.tokens}_seconds"] -
                                           report["generate_1_seconds"]) / max(1, args.tokens - 1)
    def generated(run: Decoding) -> list:
        return generate_sql(model, tokenizer, prompts, cfg, device, args.tokens, progress=False,
                            min_new_tokens=args.tokens, decoding=run)[0]

    levers = {  # part: (what is timed, (label, Decoding) without the lever, then with it)
        # the decode attention on repeated KV heads (as transformers 5.17 runs it) vs packed (model/decode_attention.py)
        "gqa": ("gqa", ("repeated", Decoding(batch_size=plan.batch_size, packed_gqa=False)),
                ("packed", Decoding(batch_size=plan.batch_size, packed_gqa=True))),
        "chunked": ("prefill", ("one", Decoding(batch_size=plan.batch_size, prefill_chunk_rows=0)),
                    ("sliced", Decoding(batch_size=plan.batch_size))),
        "prealloc": ("cache", ("concatenated", Decoding(batch_size=plan.batch_size, preallocated_cache=False)),
                     ("preallocated", Decoding(batch_size=plan.batch_size))),
    }
    for part, (what, *settings) in levers.items():
        if part in args.parts:
            lever(report, generated, args.repeats, f"generate_{args.tokens}", what, settings)
    if "static" in args.parts:
        static = Decoding(batch_size=plan.batch_size, static_cache=True)
        report[f"generate_{args.tokens}_static_cache_seconds"] = timed(lambda: generate_sql(
            model, tokenizer, prompts, cfg, device, args.tokens, progress=False, min_new_tokens=args.tokens,
            decoding=static), args.repeats)
    if "profile" in args.parts:
        profiles(report, model, tokenizer, prompts, encoded, cfg, device, decoding)
    print(json.dumps({k: v for k, v in report.items() if not k.endswith("_profile")}, indent=1))
    args.out.write_text(json.dumps(report, indent=2))


def profiles(report: dict[str, Any], model, tokenizer, prompts: list[str], encoded: list[list[int]], cfg,
             device: torch.device, decoding: Decoding) -> None:
    """torch.profiler's top operators of one prefill, and of a prefill with 4 decode steps."""
    pad_id = tokenizer.pad_token_id
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        prefill(model, encoded, pad_id, device)
        sync()
    sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    report["prefill_profile"] = prof.key_averages().table(sort_by=sort, row_limit=15)
    with profile(activities=activities) as prof:  # prefill + 4 decode steps: the decode steps' share is the rest
        generate_sql(model, tokenizer, prompts, cfg, device, 5, progress=False, min_new_tokens=5, decoding=decoding)
        sync()
    report["generate_5_profile"] = prof.key_averages().table(sort_by=sort, row_limit=25)
    print(report["prefill_profile"], report["generate_5_profile"], sep="\n")


if __name__ == "__main__":
    main()
