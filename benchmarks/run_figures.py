"""The figures of one finished run directory in one JSON (stage wall times, peak GPU memory, training tokens/s,
generated tokens/s, accuracy), e.g. for a closing note or a benchmark log.

    python benchmarks/run_figures.py outputs/runs/baseline/<run> [--out figures.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def figures(run_dir: Path) -> dict:
    def read(name: str) -> dict:
        path = run_dir / name
        return json.loads(path.read_text()) if path.is_file() else {}

    run, train, infer, metrics = (read(n) for n in ("run_summary.json", "train_summary.json", "infer_summary.json",
                                                    "metrics.json"))
    return {
        "run_dir": str(run_dir), "status": run.get("status"), "mlflow_run_id": run.get("mlflow_run_id"),
        "stage_seconds": {k.removesuffix("_seconds"): round(v, 1) for k, v in run.items() if k.endswith("_seconds")},
        "train": {k: train.get(k) for k in ("train_examples", "global_steps", "effective_batch", "world_size",
                                             "train_seconds", "tokens_seen", "tokens_per_s", "train_loss_first",
                                             "train_loss_last", "peak_memory_gib")},
        "infer": {k: infer.get(k) for k in ("examples", "max_new_tokens", "infer_seconds", "generated_tokens",
                                             "generated_tokens_per_s", "infer_peak_memory_gib")},
        "eval": {k: metrics.get(k) for k in ("n", "execution_accuracy", "logical_form_accuracy", "valid_sql_rate")},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    text = json.dumps(figures(args.run_dir), indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
