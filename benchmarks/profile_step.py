"""Where one training step's time goes, on the project's own train path (same batches, model and fast paths as
the train stage): per-step wall time under each combination of switches, then torch.profiler over a few steps of
one row (top operators, kernel launches, GPU busy time per step).

The GPU benchmark found the NF4 + LoRA step bound by a fixed cost per pass rather than by tokens; this attributes
it. One model load serves every row: switches are toggled in place (compiling last, as it cannot be undone).

    python benchmarks/profile_step.py --model /tmp/m7b --preset baseline --out costs.json    # on the GPU
    python benchmarks/profile_step.py --model /tmp/m7b --dequantize --out costs_dq.json       # the fast plan's weights
    python benchmarks/profile_step.py --dry-run                                               # CPU, tiny model
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, schedule

sys.path.insert(0, str(Path(__file__).parent))
from gpu_benchmark import bench_examples, lora_model, preset_config, release, sync  # noqa: E402

from experiments.model.loading import (  # noqa: E402
    attend_causally_without_padding_mask,
    attention_without_cudnn,
    compile_blocks,
    load_tokenizer,
    peak_gpu_memory_gib,
    resolve_device,  # noqa: E402
)
from experiments.model.tokenization import encode_example  # noqa: E402
from experiments.stages.train import plan_micro_batches  # noqa: E402
from experiments.training.batching import PlannedBatchCollator  # noqa: E402

# (row name, gradient checkpointing, padding mask dropped, compiled); compiled rows last
MATRIX = [
    ("eager, checkpointing, padding mask", True, False, False),
    ("eager, checkpointing, causal only", True, True, False),
    ("eager, no checkpointing, padding mask", False, False, False),
    ("eager, no checkpointing, causal only", False, True, False),
    ("compiled, checkpointing, causal only", True, True, True),
    ("compiled, no checkpointing, causal only", False, True, True),
]


def set_checkpointing(model, on: bool) -> None:
    base = model.get_base_model()
    if on:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        base.gradient_checkpointing_disable()


def profile_steps(step: Callable[[int], None], first: int, steps: int, device: torch.device, top: int,
                  trace: Path | None) -> dict:
    on_gpu = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    with profile(activities=activities, schedule=schedule(wait=0, warmup=1, active=steps, repeat=1)) as prof:
        for index in range(first, first + steps + 1):
            step(index)
            prof.step()
    events = prof.key_averages()
    for key in (["self_device_time_total"] if on_gpu else []) + ["cpu_time_total"]:
        print(events.table(sort_by=key, row_limit=top))
    if trace:
        prof.export_chrome_trace(str(trace))
    launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC"))
    # kernels only: GPU-side annotations (ProfilerStep*, Optimizer.step#...) span kernels already counted
    kernels_ms = sum(e.self_device_time_total for e in events if e.self_cpu_time_total == 0
                     and not e.key.startswith("ProfilerStep") and "#" not in e.key) / 1000
    return {"kernel_launches_per_step": launches / steps, "gpu_kernel_ms_per_step": kernels_ms / steps if on_gpu
            else None, "aten_ops_per_step": sum(e.count for e in events if e.key.startswith("aten::")) / steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="local Mistral directory (make_random_mistral.py)")
    parser.add_argument("--preset", default="baseline")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per row (after --warmup steps)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rows", nargs="*", type=int, help="indices into the matrix (default: all)")
    parser.add_argument("--profile-steps", type=int, default=3, help="profiled steps (0: none)")
    parser.add_argument("--profile-row", type=int, default=1, help="the matrix row to profile, right after timing it")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--dequantize", action="store_true",
                        help="NF4 dequantised once before LoRA (the fast memory plan's weights) for every row")
    parser.add_argument("--cudnn-attention", action="store_true",
                        help="let SDPA pick cuDNN attention (the train stage excludes it: attention_without_cudnn)")
    parser.add_argument("--dry-run", action="store_true", help="CPU + tiny model: exercise the code")
    parser.add_argument("--trace", type=Path, help="Chrome trace of the profiled steps (chrome://tracing, Perfetto)")
    parser.add_argument("--out", type=Path, default=Path("step_costs.json"))
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. quantization.compute_dtype=bfloat16")
    args = parser.parse_args()

    cfg = preset_config(args.preset, args.model, args.dry_run, list(args.overrides))
    device = resolve_device("cpu" if args.dry_run else "auto")
    t = cfg.training
    tokenizer = load_tokenizer(cfg.model)
    rows = [MATRIX[i] for i in args.rows] if args.rows else MATRIX
    per_step = t.per_device_batch_size * t.gradient_accumulation_steps
    tokenized = [encode_example(tokenizer, p.prompt, p.target, t.loss_on) for p in bench_examples(per_step * 8)]
    dataset, per_batch, accumulation = plan_micro_batches(tokenized, t, cfg.data_size.max_length)
    collate = PlannedBatchCollator(tokenizer.pad_token_id)
    model = lora_model(cfg, device, t.gradient_checkpointing, dequantize=args.dequantize)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=t.learning_rate)
    half = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(cfg.quantization.compute_dtype)
    autocast = torch.autocast(device.type, dtype=half, enabled=device.type == "cuda" and half is not None)

    attention = contextlib.nullcontext if args.cudnn_attention else partial(attention_without_cudnn, device)

    def step(index: int) -> None:
        for micro in range(accumulation):
            batch = {k: v.to(device) for k, v in collate([dataset[(index * accumulation + micro) % len(dataset)]])
                     .items()}
            with autocast, attention():
                loss = model(**batch).loss / accumulation
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()

    report = {"preset": args.preset, "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
              "dequantized_once": args.dequantize, "cudnn_attention": args.cudnn_attention,
              "examples_per_step": per_batch * accumulation, "accumulation": accumulation, "rows": []}
    index, mask_hook, compiled = 0, None, False
    print(f"{'switches':42} {'step s':>8} {'first steps s':>14} {'peak GiB':>9}", flush=True)
    for name, checkpointing, causal_only, compile_now in rows:
        set_checkpointing(model, checkpointing)
        if causal_only and mask_hook is None:
            mask_hook = attend_causally_without_padding_mask(model)
        elif not causal_only and mask_hook is not None:
            mask_hook.remove()
            mask_hook = None
        if compile_now and not compiled:
            compile_blocks(model)
            compiled = True
        release()
        walls = []
        for _ in range(args.warmup + args.steps):
            started = time.perf_counter()
            step(index)
            walls.append(time.perf_counter() - started)
            index += 1
        row = {"switches": name, "step_seconds": statistics.median(walls[args.warmup:]),
               "warmup_seconds": sum(walls[:args.warmup]), "peak_memory_gib": peak_gpu_memory_gib()}
        report["rows"].append(row)
        mem = f"{row['peak_memory_gib']:.1f}" if row["peak_memory_gib"] is not None else "-"
        print(f"{name:42} {row['step_seconds']:8.3f} {row['warmup_seconds']:14.1f} {mem:>9}", flush=True)
        if args.profile_steps and MATRIX.index((name, checkpointing, causal_only, compile_now)) == args.profile_row:
            print(f"\nprofile of: {name}")
            report["profile"] = {"switches": name, **profile_steps(step, index, args.profile_steps, device, args.top,
                                                                    args.trace)}
            index += args.profile_steps + 1
            print(json.dumps(report["profile"]), flush=True)
        args.out.write_text(json.dumps(report, indent=2))
    args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
