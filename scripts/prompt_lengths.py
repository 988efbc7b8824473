#!/usr/bin/env python3
"""How long are a data set's training examples in tokens? Size `data_size.max_length` from the answer.

Composes the config as `experiments` would (same overrides), runs the prepare stage into a scratch directory and
tokenises every prepared example as training does (BOS + prompt + SQL + EOS, model.tokenization), with the
configured model's tokenizer only (no weights are loaded). Prints, per subset, the median, 90th and 99th
percentiles and the longest, and how many examples `data_size.max_length` would drop; `--json FILE` writes the
same figures.

    python scripts/prompt_lengths.py experiment=spider_baseline data=spider_sample model=tiny_mistral
    python scripts/prompt_lengths.py data=spider data.path=/data/spider data.example_values=0 --json lengths.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from experiments.config import LossOn, load_config
from experiments.data.prepared import read_prepared
from experiments.model.loading import load_tokenizer
from experiments.model.tokenization import encode_example
from experiments.runs.files import RunFiles
from experiments.stages.prepare import run_prepare


def percentile(sorted_values: list[int], q: float) -> int:
    """The nearest-rank percentile (q in 0..100) of an ascending list."""
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[int(rank) - 1]


def subset_lengths(tokenizer, split: Path) -> list[int]:
    """Tokens of each example of a prepared split as training counts them (prompt + SQL + EOS)."""
    return sorted(len(encode_example(tokenizer, e.prompt, e.target, LossOn.completion).input_ids)
                  for e in read_prepared(split))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="config overrides, as for `experiments`")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    cfg = load_config(args.overrides)
    tokenizer = load_tokenizer(cfg.model)
    figures: dict = {"overrides": args.overrides, "model": cfg.model.name, "max_length": cfg.data_size.max_length,
                     "example_values": cfg.data.example_values, "subsets": {}}
    with tempfile.TemporaryDirectory() as scratch:
        run_prepare(cfg, Path(scratch))
        files = RunFiles(Path(scratch))
        for subset in ("train", "val", "test"):
            lengths = subset_lengths(tokenizer, files.split(subset))
            if not lengths:
                continue
            figures["subsets"][subset] = {
                "n": len(lengths), "median": statistics.median(lengths), "p90": percentile(lengths, 90),
                "p99": percentile(lengths, 99), "max": lengths[-1],
                "over_max_length": sum(n > cfg.data_size.max_length for n in lengths)}
    print(f"tokens per example (prompt + SQL + EOS), model {cfg.model.name}, data.example_values="
          f"{cfg.data.example_values}, data_size.max_length={cfg.data_size.max_length}")
    print(f"{'subset':<8}{'n':>7}{'median':>8}{'p90':>7}{'p99':>7}{'max':>7}{'over':>7}")
    for subset, f in figures["subsets"].items():
        print(f"{subset:<8}{f['n']:>7}{f['median']:>8.0f}{f['p90']:>7}{f['p99']:>7}{f['max']:>7}"
              f"{f['over_max_length']:>7}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
