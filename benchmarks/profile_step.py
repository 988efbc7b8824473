"""Where one training step's time goes: torch.profiler over a few steps of the project's own train path (same
pieces as the train stage), printing the top operators by self time and the number of kernel launches per step.

The GPU benchmark found the NF4 + LoRA step bound by a fixed cost per forward/backward pass rather than by
tokens; this attributes that cost (launch counts, dequantisation, casts, recomputation) before anything is
changed to cut it.

    python benchmarks/profile_step.py --model /tmp/m7b --preset baseline --out trace.json   # on the GPU
    python benchmarks/profile_step.py --dry-run                                             # CPU, tiny model
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, schedule

sys.path.insert(0, str(Path(__file__).parent))
from gpu_benchmark import bench_examples, lora_model, preset_config, sync  # noqa: E402

from experiments.batching import PlannedBatchCollator  # noqa: E402
from experiments.modeling import load_tokenizer, resolve_device  # noqa: E402
from experiments.tokenization import encode_example  # noqa: E402
from experiments.train import plan_training  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="local Mistral directory (make_random_mistral.py)")
    parser.add_argument("--preset", default="baseline")
    parser.add_argument("--steps", type=int, default=3, help="profiled steps (after 2 warm-up steps)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--dry-run", action="store_true", help="CPU + tiny model: exercise the code")
    parser.add_argument("--out", type=Path, help="Chrome trace to write (open in chrome://tracing or Perfetto)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. quantization.compute_dtype=bfloat16")
    args = parser.parse_args()

    cfg = preset_config(args.preset, args.model, args.dry_run, list(args.overrides))
    device = resolve_device("cpu" if args.dry_run else "auto")
    t = cfg.training
    tokenizer = load_tokenizer(cfg.model)
    per_step = t.per_device_batch_size * t.gradient_accumulation_steps
    examples = bench_examples(per_step * 8 * (args.steps + 2))  # enough for token-budget steps too
    tokenized = [encode_example(tokenizer, p.prompt, p.target, t.loss_on) for p in examples]
    dataset, per_batch, accumulation = plan_training(tokenized, t, cfg.data_size.max_length)
    collate = PlannedBatchCollator(tokenizer.pad_token_id)
    model = lora_model(cfg, device, t.gradient_checkpointing)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=t.learning_rate)
    half = {"float16": torch.float16, "bfloat16": torch.bfloat16}.get(cfg.quantization.compute_dtype)
    autocast = torch.autocast(device.type, dtype=half, enabled=device.type == "cuda" and half is not None)

    def step(index: int) -> None:
        for micro in range(accumulation):
            batch = {k: v.to(device) for k, v in collate([dataset[index * accumulation + micro]]).items()}
            with autocast:
                loss = model(**batch).loss / accumulation
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities, schedule=schedule(wait=0, warmup=2, active=args.steps, repeat=1),
                 record_shapes=False) as prof:
        for index in range(args.steps + 2):
            step(index)
            prof.step()
    events = prof.key_averages()
    sort_key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(events.table(sort_by=sort_key, row_limit=args.top))
    launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC"))
    summary = {"preset": args.preset, "device": str(device), "examples_per_micro_batch": per_batch,
               "accumulation": accumulation, "profiled_steps": args.steps,
               "kernel_launches_per_step": launches / args.steps if launches else None,
               "cpu_ms_per_step": sum(e.self_cpu_time_total for e in events) / 1000 / args.steps}
    print(json.dumps(summary))
    if args.out:
        prof.export_chrome_trace(str(args.out))


if __name__ == "__main__":
    main()
