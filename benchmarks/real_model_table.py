"""A real pretrained model through every recipe, side by side on the same data, all scored by the eval stage:
zero-shot (free and grammar), the notebooks' recipe (benchmarks/notebook_recipe.py), each preset's recipe (baseline,
tweaked, extended-sized) decoded free, with the grammar and with the grammar + execution guidance (k = 4), and a
data-scaling curve. Prints a Markdown table (95% Wilson intervals, wall times) and writes JSON.

    python benchmarks/real_model_table.py --out DIR                          # model=smollm2_135m, on the GPU
    python benchmarks/real_model_table.py --out DIR model.gguf_file=/tmp/smol.gguf   # its GGUF, carried
    python benchmarks/real_model_table.py --out DIR --rows zero_shot_free baseline   # some rows
    python benchmarks/real_model_table.py --out DIR --dry-run                # CPU, a few steps: checks the code

Every row is a pipeline run in DIR/runs/<row> (as `experiments` would run it, in this one process), so its
config.yaml, predictions, results and reports stay there; the command of each row is printed with the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import notebook_recipe  # noqa: E402

from experiments.analysis.stats import wilson_interval  # noqa: E402
from experiments.config import load_config  # noqa: E402
from experiments.pipeline import run_pipeline  # noqa: E402

# The sample has 160 dev and 160 test questions: val 64 of dev, test all 160.
DATA = ["model=smollm2_135m", "data=sample", "data_size.val=64", "data_size.test=null", "tracking=none"]
DRY_RUN = ["device=cpu", "quantization=none", "data_size.train=32", "data_size.val=8", "data_size.test=8",
           "training.max_steps=2", "training.eval_steps=2", "training.logging_steps=1", "training.num_epochs=1"]
DECODE = ["stages=[prepare,infer,eval]"]


@dataclass(frozen=True)
class Row:
    name: str
    recipe: str
    decoding: str  # free | grammar | grammar + guided k=4
    overrides: tuple[str, ...]
    adapter_of: str | None = None  # decode this row's adapter instead of training
    notebook: bool = False


def preset_rows(preset: str, recipe: str, extra: tuple[str, ...] = ()) -> list[Row]:
    base = (f"experiment={preset}", *DATA, *extra)
    return [Row(preset, recipe, "grammar", base),
            Row(f"{preset}_free", recipe, "free", (*base, *DECODE, "inference.constrain=none"), adapter_of=preset),
            Row(f"{preset}_guided", recipe, "grammar + guided k=4", (*base, *DECODE, "inference.execution_guided=4"),
                adapter_of=preset)]


ROWS: list[Row] = [
    Row("zero_shot_free", "zero-shot", "free", ("experiment=baseline", *DATA, *DECODE, "inference.constrain=none")),
    Row("zero_shot_grammar", "zero-shot", "grammar", ("experiment=baseline", *DATA, *DECODE)),
    Row("notebook", "notebooks' recipe (baseline budget)", "free, T=0.1, cut at newline",
        ("experiment=baseline", *DATA), notebook=True),
    *preset_rows("baseline", "baseline"),
    *preset_rows("tweaked", "tweaked"),
    *preset_rows("extended", "extended-sized (all 4,480 train)", ("data_size.train=null",)),
    Row("scaling_200", "baseline, 200 train", "grammar", ("experiment=baseline", *DATA, "data_size.train=200")),
    Row("scaling_4480", "baseline, 4,480 train", "grammar", ("experiment=baseline", *DATA, "data_size.train=null")),
]

# The quickstart preset's recipe (a CPU preset) searched on a GPU in float32, as on the CPU: steps x examples per step
# x learning rate, chosen by val execution accuracy on all 160 dev questions (test is reported, not chosen on).
QUICKSTART = ("experiment=quickstart", "device=auto", "model.dtype=float32", "tracking=none", "data_size.val=null",
              "training.eval_generate_examples=null")


def quickstart_row(steps: int, batch: int, lr: float, *extra: str) -> Row:
    name = f"quickstart_{steps}x{batch}_lr{lr:g}" + "".join(f"_{e.split('=')[-1]}" for e in extra)
    return Row(name, f"quickstart, {steps} steps x {batch}, lr {lr:g} {' '.join(extra)}".strip(), "grammar",
               (*QUICKSTART, f"training.max_steps={steps}", f"training.per_device_batch_size={batch}",
                f"training.learning_rate={lr}", f"training.eval_steps={steps}", f"training.save_steps={steps}",
                *extra))


SEARCH: list[Row] = [quickstart_row(20, 16, 1e-3), quickstart_row(30, 16, 1e-3), quickstart_row(40, 16, 1e-3),
                     quickstart_row(20, 16, 2e-3), quickstart_row(30, 16, 2e-3), quickstart_row(40, 8, 1e-3),
                     quickstart_row(40, 8, 2e-3), quickstart_row(20, 16, 1e-3, "model.dtype=bfloat16")]
ALL = [*ROWS, *SEARCH]


def run_row(row: Row, out: Path, extra: list[str]) -> dict:
    run_dir = out / "runs" / row.name
    overrides = [*row.overrides, *extra]
    if row.adapter_of:
        overrides.append(f"adapter={out / 'runs' / row.adapter_of / 'adapter'}")
    if run_dir.exists():  # a row cut short in an earlier call starts again
        shutil.rmtree(run_dir)
    started = time.perf_counter()
    if row.notebook:
        run_pipeline(load_config([*overrides, "stages=[prepare]"]), run_dir, overrides=tuple(overrides))
        notebook = notebook_recipe.run(run_dir, overrides)
        predictions = f"eval.predictions={notebook['predictions']}"
        run_pipeline(load_config([*overrides, "stages=[eval]", predictions]), run_dir, overrides=tuple(overrides))
    else:
        run_pipeline(load_config(overrides), run_dir, overrides=tuple(overrides))
    return figures(row, run_dir, time.perf_counter() - started, overrides)


def figures(row: Row, run_dir: Path, wall: float, overrides: list[str]) -> dict:
    def read(name: str) -> dict:
        path = run_dir / name
        return json.loads(path.read_text()) if path.is_file() else {}

    metrics, train, infer = read("metrics.json"), read("train_summary.json"), read("infer_summary.json")
    if row.adapter_of:  # a decoding of another row's adapter: its training figures are that row's
        trained = run_dir.parent / row.adapter_of / "train_summary.json"
        train = json.loads(trained.read_text()) if trained.is_file() else {}
    notebook = read("notebook_summary.json")
    n = metrics["n"]
    out = {"row": row.name, "recipe": row.recipe, "decoding": row.decoding, "n": n,
           "train_examples": train.get("train_examples") or notebook.get("train_examples"),
           "steps": train.get("global_steps") or notebook.get("global_steps"),
           "train_seconds": train.get("train_seconds") or notebook.get("train_seconds"),
           "val_execution_accuracy": train.get("best_score") if train.get("best_by") == "execution_accuracy" else None,
           "infer_seconds": infer.get("infer_seconds") or notebook.get("infer_seconds"),
           "wall_seconds": wall, "categories": metrics.get("categories", {}),
           "command": "experiments " + " ".join(overrides) + (" (+ benchmarks/notebook_recipe.py)" if row.notebook
                                                              else "")}
    for key in ("execution_accuracy", "logical_form_accuracy", "valid_sql_rate"):
        value = metrics[key]
        low, high = wilson_interval(round(value * n), n)
        out[key] = {"value": value, "ci_low": low, "ci_high": high}
    out["model_source"] = train.get("model_source") or infer.get("model_source")
    return out


def table(results: list[dict]) -> str:
    notebook = next((r for r in results if r["row"] == "notebook"), None)
    lines = ["| recipe | decoding | train examples | steps | EX (95% CI) | LF | valid SQL | unknown col. | syntax "
             "err. | val EX | train s | infer s | wall s | EX / notebooks' |",
             "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        ex = r["execution_accuracy"]
        same_budget = (notebook and r["train_examples"] == notebook["train_examples"]
                       and r["steps"] == notebook["steps"] and notebook["execution_accuracy"]["value"] > 0)
        ratio = f"{ex['value'] / notebook['execution_accuracy']['value']:.2f}" if same_budget else "-"
        seconds = [f"{r[k]:.0f}" if r.get(k) is not None else "-" for k in ("train_seconds", "infer_seconds")]
        val = f"{r['val_execution_accuracy']:.3f}" if r.get("val_execution_accuracy") is not None else "-"
        lines.append(f"| {r['recipe']} | {r['decoding']} | {r['train_examples'] or 0:,} | {r['steps'] or 0} | "
                     f"{ex['value']:.3f} ({ex['ci_low']:.3f}-{ex['ci_high']:.3f}) | "
                     f"{r['logical_form_accuracy']['value']:.3f} | {r['valid_sql_rate']['value']:.3f} | "
                     f"{r['categories'].get('unknown_column', 0)} | {r['categories'].get('syntax_error', 0)} | "
                     f"{val} | {seconds[0]} | {seconds[1]} | {r['wall_seconds']:.0f} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--rows", nargs="+", choices=[r.name for r in ALL],
                        help="default: every row but the quickstart search (SEARCH)")
    parser.add_argument("--dry-run", action="store_true", help="CPU, a few steps and examples: checks the code")
    parser.add_argument("overrides", nargs="*", help="added to every row (e.g. model.gguf_file=...)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] %(message)s")
    extra = [*(DRY_RUN if args.dry_run else []), *args.overrides]
    wanted = set(args.rows or [r.name for r in ROWS])
    results_path = args.out / "real_model_table.json"
    results = json.loads(results_path.read_text()) if results_path.is_file() else []
    done = {r["row"] for r in results}
    for row in ALL:
        if row.name not in wanted or row.name in done:
            continue
        try:
            results.append(run_row(row, args.out, extra))
        except Exception as err:  # one row's failure is reported, the others still run
            logging.exception("row %s failed", row.name)
            results.append({"row": row.name, "error": f"{type(err).__name__}: {err}"})
        args.out.mkdir(parents=True, exist_ok=True)
        results_path.write_text(json.dumps(results, indent=2) + "\n")
    good = [r for r in results if "error" not in r]
    print(table(sorted(good, key=lambda r: [row.name for row in ALL].index(r["row"]))))
    for r in good:
        print(f"- {r['row']}: `{r['command']}`")
    for r in results:
        if "error" in r:
            print(f"- {r['row']}: FAILED {r['error']}")


if __name__ == "__main__":
    main()
