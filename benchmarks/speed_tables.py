"""README "Speed" tables (Markdown) from gpu_benchmark.py's JSON files, one or several (e.g. one per device call).

    python benchmarks/speed_tables.py baseline.json extended.json generation.json

Ratios are taken within each file (each training file holds its own seed row), as the README's figures are.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

LABELS = {"seed": "seed-style (padded to max_length, HF Trainer, checkpointing)",
          "trl_packed": "TRL SFTTrainer, packing",
          "ours": "**ours (defaults: memory_plan=auto)**", "ours_fast": "ours, memory_plan=fast",
          "ours_fast_eager": "ours, memory_plan=fast, not compiled", "ours_low": "ours, memory_plan=low (today's plan)",
          "ours_compiled": "ours, low plan, compiled", "ours_eager": "ours, low plan, not compiled",
          "ours_lowmem": "ours, low plan, fuse_accumulation=false", "ours_no_gc": "ours, low plan, no checkpointing",
          "ours_bf16": "ours, bf16 compute", "ours_tokens": "ours, tokens_per_step = the seed's padded budget",
          "ours_fast_compiled": "ours, memory_plan=fast, compiled", "ours_cudnn": "ours, SDPA free to pick cuDNN",
          "ours_fast_compiled_cudnn": "ours, memory_plan=fast, compiled, SDPA free to pick cuDNN"}


def training_rows(report: dict) -> list[str]:
    peak = report.get("bf16_matmul_tflops")
    rows = []
    for preset, variants in report.get("training", {}).items():
        seed = next((r["useful_tokens_per_s"] for r in variants if r["variant"] == "seed" and "error" not in r), None)
        for r in variants:
            if "error" in r:
                rows.append(f"| {preset} | {LABELS.get(r['variant'], r['variant'])} | error: {r['error'][:60]} |"
                            " | | | | | |")
                continue
            ratio = f"{r['useful_tokens_per_s'] / seed:.1f}" if seed else "-"
            share = f"{100 * r['tflops_useful'] / peak:.1f}" if peak else "-"
            predicted = f"{r['predicted_peak_gib']:.1f}" if r.get("predicted_peak_gib") is not None else "-"
            measured = f"{r['peak_memory_gib']:.1f}" if r.get("peak_memory_gib") is not None else "-"
            rows.append(f"| {preset} | {LABELS.get(r['variant'], r['variant'])} | {r['useful_tokens_per_s']:,.0f} | "
                        f"{ratio} | {share} | {measured} | {predicted} | {r['epoch_seconds']:,.0f} | "
                        f"{r.get('plan', '')} |")
    return rows


def generation_rows(report: dict) -> list[str]:
    gen = report.get("generation")
    if not gen:
        return []
    rows = []
    for name, g in gen.items():
        if not isinstance(g, dict) or "seconds_per_1000_prompts" not in g:
            continue
        agree = f"{100 * g['agreement_with_4bit']:.1f}%" if "agreement_with_4bit" in g else "-"
        ratio = f"{g['x_one_at_a_time']:.0f}x" if "x_one_at_a_time" in g else "-"
        rows.append(f"| {name} | {g['plan']} | {g['seconds_per_1000_prompts']:,.1f} | {g['tokens_per_s']:,.0f} | "
                    f"{ratio} | {g['warmup_seconds']:.0f} | {agree} | {g['peak_memory_gib'] or 0:.1f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", nargs="+", type=Path)
    args = parser.parse_args()
    reports = [json.loads(p.read_text()) for p in args.reports]
    train = [row for r in reports for row in training_rows(r)]
    if train:
        print("| preset | variant | useful tok/s | x seed | % bf16 | peak GiB | predicted GiB | s/epoch | plan |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---|")
        print("\n".join(train))
    gen = [row for r in reports for row in generation_rows(r)]
    if gen:
        print("\n| generation | plan | s per 1,000 prompts | tok/s | x one at a time | warm-up s | same text as 4-bit |"
              " peak GiB |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        print("\n".join(gen))


if __name__ == "__main__":
    main()
