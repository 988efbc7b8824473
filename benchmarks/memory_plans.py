"""What training.memory_plan=auto and inference.memory_plan=auto pick for each preset on GPUs of given sizes, from the
planner alone (memory_plan.py; Mistral-7B's config on the meta device, nothing loaded): runs on any CPU in seconds.

    python benchmarks/memory_plans.py                       # 141, 80, 48, 24 and 16 GB GPUs
    python benchmarks/memory_plans.py --gpus 141:139 24:22.5  # nominal GB:free GiB once the CUDA context exists

The longest micro-batch is the worst case the preset can plan (per-device batch x accumulation x max_length); a
run plans for its real longest micro-batch, which is shorter. Generation: the preset's inference batch, prompts of
--prompt-tokens, 40 new tokens, its test split in batches.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, MistralConfig

from experiments.config import load_config
from experiments.model.memory_plan import GIB, facts_from_module, plan_inference, plan_training

sys.path.insert(0, str(Path(__file__).parent))
from make_random_mistral import MISTRAL_7B_V01  # noqa: E402

DEFAULT_GPUS = {141: 139.0, 80: 78.5, 48: 46.5, 24: 22.5, 16: 14.5}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["baseline", "extended"])
    parser.add_argument("--gpus", nargs="+", help="GB:free_GiB pairs (default: 141, 80, 48, 24, 16 GB)")
    parser.add_argument("--prompt-tokens", type=int, default=200)
    parser.add_argument("--new-tokens", type=int, default=40)
    args = parser.parse_args()
    gpus = {float(g.split(":")[0]): float(g.split(":")[1]) for g in args.gpus} if args.gpus else DEFAULT_GPUS
    config = MistralConfig(**MISTRAL_7B_V01)
    with torch.device("meta"):
        meta = AutoModelForCausalLM.from_config(config)
    print(f"{'preset':9} {'GPU':>6} {'free GiB':>8}  training plan (predicted peak)  |  inference plan (peak)")
    for preset in args.presets:
        cfg = load_config([f"experiment={preset}", "tracking=none"])
        t, inf = cfg.training, cfg.inference
        facts = facts_from_module(meta, config, cfg.quantization, cfg.lora, weight_bytes=2)
        per_step = t.per_device_batch_size * t.gradient_accumulation_steps
        longest = per_step * cfg.data_size.max_length
        steps = math.ceil((cfg.data_size.train or 1000) / per_step * t.num_epochs)
        for gpu, free in gpus.items():
            train = plan_training(t.memory_plan, facts, longest, int(free * GIB), steps, t.gradient_checkpointing,
                                  t.compile)
            infer = plan_inference(inf.memory_plan, facts, cfg.data_size.test or 1000, inf.batch_size,
                                   inf.max_batch_size, max(1, inf.execution_guided), args.prompt_tokens,
                                   args.new_tokens, int(free * GIB))
            print(f"{preset:9} {gpu:>4.0f}GB {free:8.1f}  {train.describe()} ({train.predicted_peak_gib:.1f} GiB)  |  "
                  f"{infer.describe()} ({infer.predicted_peak_gib:.1f} GiB)")


if __name__ == "__main__":
    main()
