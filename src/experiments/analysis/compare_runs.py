"""`experiments-compare RUN_A RUN_B [...]`: several runs side by side, and for each pair scored on the same test
examples, what changed example by example and whether the change is more than noise (McNemar's test).

A RUN is a run directory, an MLflow run id or an MLflow run name (its `run_dir` tag gives the directory; if the
directory is gone, the run's logged artifacts are downloaded instead). Runs prepared with different prompts or
scored on different test examples are flagged at the top: their per-run numbers are shown, but a difference
between them is not a measured effect of whatever else changed.

Writes comparison.md, comparison.html (self-contained) and comparison.json into --out, and logs them to a new
MLflow run (tag kind=comparison) in the compared runs' experiment when MLflow is configured.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from mlflow.exceptions import MlflowException

from experiments.analysis.document import Alert, Document, Heading, Paragraph, Plain, TableBlock, write_document
from experiments.analysis.run_records import STAGES, RunError, RunRecord, load_run
from experiments.analysis.stats import McNemarResult, mcnemar
from experiments.config import ExperimentConfig
from experiments.fileio import write_json
from experiments.tracking.mlflow_tracker import default_store

log = logging.getLogger(__name__)

DEFAULT_OUTPUTS = ExperimentConfig().outputs_dir  # where runs and the default MLflow store live
RUN_ARTIFACTS = ("config.yaml", "run_summary.json", "train_summary.json", "metrics.json", "results.jsonl",
                 "data/report.json")
_RUN_ID = re.compile(r"[0-9a-f]{32}")


# ---------------------------------------------------------------------------------------------------------------
# Per-run table and warnings


def _ci(bounds: tuple[float, float, float] | None) -> Plain:
    return Plain("" if bounds is None else f"[{bounds[1]:.3f}, {bounds[2]:.3f}]")


def run_label(record: RunRecord) -> str:
    """How a run is named in the comparison's tables: its preset, marked when zero-shot (not its MLflow run name)."""
    return record.preset + (" (zero-shot)" if record.zero_shot else "")


COST_NOTE = ("EX: execution accuracy, LF: logical-form accuracy, each with its 95% Wilson score interval; valid SQL: "
             "the share of predictions that run. Times are wall-clock seconds per stage; peak memory is the GPU peak "
             "of training or inference (blank on CPU).")


def _fixed(value: float | None, digits: int) -> str | None:
    """One format per column (0.238, not 0.2375 beside 0.1): accuracies to 3 decimals, seconds and GiB to 1."""
    return None if value is None else f"{value:.{digits}f}"


def metrics_table(records: Sequence[RunRecord], extra: dict[str, Sequence[Any]] | None = None) -> TableBlock:
    """Headline metrics with 95% Wilson intervals: one row per run, narrow enough for MLflow's artifact preview.
    `extra` adds columns right after the run's name (e.g. a sweep's overrides), one value per run."""
    extra = extra or {}
    headers = ("#", "run", "status", *extra, "EX", "EX 95% CI", "LF", "LF 95% CI", "valid SQL", "n")
    rows = []
    for i, record in enumerate(records):
        ex, lf = record.accuracy("exec_match"), record.accuracy("lf_match")
        valid = (record.metrics or {}).get("valid_sql_rate")
        rows.append((i + 1, run_label(record), record.status, *(values[i] for values in extra.values()),
                     _fixed(ex and ex[0], 3), _ci(ex), _fixed(lf and lf[0], 3), _ci(lf), _fixed(valid, 3),
                     record.n))
    return TableBlock(headers, tuple(rows))


def cost_table(records: Sequence[RunRecord]) -> TableBlock:
    """What each run cost: training examples, wall seconds per stage, peak GPU memory."""
    headers = ("#", "run", "train_examples", *(f"{s}_s" for s in STAGES), "peak_memory_gib")
    rows = tuple((i + 1, run_label(r), r.train_examples, *(_fixed(r.stage_seconds(s), 1) for s in STAGES),
                  _fixed(r.peak_memory_gib, 1)) for i, r in enumerate(records))
    return TableBlock(headers, rows)


def runs_table(records: Sequence[RunRecord]) -> TableBlock:
    """Where each run lives and what it was prepared with."""
    rows = [(i + 1, run_label(r), str(r.run_dir), r.mlflow_run_id or "", (r.prompt_fingerprint or "unknown")
             + (f" ({r.prompt_version})" if r.prompt_version else ""), r.test_ids_sha or "unknown")
            for i, r in enumerate(records)]
    return TableBlock(("#", "run", "run_dir", "mlflow_run_id", "prompt fingerprint", "test ids"), tuple(rows))


def _names(records: Sequence[RunRecord], indices: Sequence[int]) -> str:
    return ", ".join(f"#{i + 1} {run_label(records[i])}" for i in indices)


def _indices_by_value(values: Sequence[str | None]) -> dict[str | None, list[int]]:
    """Each distinct value (a fingerprint), with the indices of the runs that have it."""
    groups: dict[str | None, list[int]] = {}
    for i, value in enumerate(values):
        groups.setdefault(value, []).append(i)
    return groups


def fingerprint_alerts(records: Sequence[RunRecord]) -> list[Alert]:
    """Loud warnings when runs were prepared with different prompts or scored on different test examples."""
    alerts = []
    prompts = _indices_by_value([r.prompt_fingerprint for r in records])
    known = {k: v for k, v in prompts.items() if k is not None}
    if len(known) > 1:
        lines = [f"{_names(records, idx)}: prompt fingerprint {fp} ({records[idx[0]].prompt_version or '?'})"
                 for fp, idx in known.items()]
        lines.append("The prompt template, schema formatting or SQL rendering differs: these runs were trained and "
                     "scored on differently formatted text, so a difference between them is not the effect of the "
                     "other settings alone.")
        alerts.append(Alert("runs differ in prompt fingerprint", tuple(lines)))
    if None in prompts and len(records) > 1:
        versions = sorted({str(records[i].prompt_version) for i in prompts[None]})
        alerts.append(Alert("prompt fingerprint unknown", (
            f"{_names(records, prompts[None])}: no prompt fingerprint in data/report.json (prepared before "
            f"fingerprints were recorded, or no prepare stage); prompt version(s): {', '.join(versions)}. "
            "Cannot check that all runs used the same prompt.",)))
    tests = _indices_by_value([r.test_ids_sha for r in records])
    if len(tests) > 1:
        lines = [f"{_names(records, idx)}: {records[idx[0]].n or '?'} test examples, ids "
                 f"{sha or 'unknown (no data/test.jsonl, results.jsonl or data/report.json)'}"
                 for sha, idx in tests.items()]
        lines.append("Accuracies measured on different test examples are not comparable example by example: "
                     "no paired statistics are given across these groups.")
        alerts.append(Alert("runs were scored on different test examples", tuple(lines)))
    else:
        by_content = _indices_by_value([r.test_examples_sha for r in records])
        contents = {k: v for k, v in by_content.items() if k is not None}
        if len(contents) > 1:
            lines = [f"{_names(records, idx)}: test examples {sha}" for sha, idx in contents.items()]
            lines.append("Same test ids, different examples behind them (another data source or path?): "
                         "no paired statistics are given across these groups.")
            alerts.append(Alert("runs' test examples differ in content", tuple(lines)))
    return alerts


# ---------------------------------------------------------------------------------------------------------------
# Pairs


@dataclass
class PairComparison:
    a: int  # indices into the compared runs
    b: int
    skipped: str | None = None  # why no paired statistics
    n: int = 0
    test: McNemarResult | None = None
    fixed: list[str] = field(default_factory=list)  # wrong in a, right in b
    broken: list[str] = field(default_factory=list)  # right in a, wrong in b
    categories: dict[str, tuple[int, int]] = field(default_factory=dict)  # category -> (count in a, in b)


def not_pairable(a: RunRecord, b: RunRecord) -> str | None:
    """Why two runs cannot be compared example by example, or None."""
    for record in (a, b):
        if record.results is None:
            return f"{record.run_dir}: no results.jsonl (the eval stage did not run or failed)"
    if a.test_ids_sha and b.test_ids_sha and a.test_ids_sha != b.test_ids_sha:
        return f"different test examples (ids {a.test_ids_sha} vs {b.test_ids_sha})"
    if a.test_examples_sha and b.test_examples_sha and a.test_examples_sha != b.test_examples_sha:
        return f"same test ids but different examples ({a.test_examples_sha} vs {b.test_examples_sha})"
    assert a.results is not None and b.results is not None
    if set(a.results) != set(b.results):
        return f"results.jsonl hold different example ids ({len(a.results)} vs {len(b.results)} examples)"
    return None


def _category_counts(record: RunRecord) -> Counter[str]:
    assert record.results is not None
    return Counter(str(r.get("category", "unknown")) for r in record.results.values())


def compare_pair(records: Sequence[RunRecord], a: int, b: int) -> PairComparison:
    pair = PairComparison(a, b, skipped=not_pairable(records[a], records[b]))
    if pair.skipped:
        return pair
    ra, rb = records[a].results, records[b].results
    assert ra is not None and rb is not None
    ids = [i for i in (records[a].test_ids or list(ra)) if i in ra]
    pair.n = len(ids)
    pair.fixed = [i for i in ids if not ra[i].get("exec_match") and rb[i].get("exec_match")]
    pair.broken = [i for i in ids if ra[i].get("exec_match") and not rb[i].get("exec_match")]
    pair.test = mcnemar(len(pair.fixed), len(pair.broken))
    ca, cb = _category_counts(records[a]), _category_counts(records[b])
    pair.categories = {c: (ca[c], cb[c]) for c in sorted(set(ca) | set(cb), key=lambda c: (-ca[c] - cb[c], c))}
    return pair


def _p_value(test: McNemarResult) -> str:
    return f"McNemar ({test.method}) p = {test.p_value:.4g}"


def pair_blocks(records: Sequence[RunRecord], pair: PairComparison, max_examples: int) -> list[Any]:
    a, b = records[pair.a], records[pair.b]
    na, nb = f"#{pair.a + 1}", f"#{pair.b + 1}"
    blocks: list[Any] = [Heading(f"{na} {run_label(a)} → {nb} {run_label(b)}", 3)]
    if pair.skipped or pair.test is None:
        return [*blocks, Paragraph(f"Not paired: {pair.skipped}.")]
    ex_a, ex_b = a.accuracy("exec_match"), b.accuracy("exec_match")
    lf_a, lf_b = a.accuracy("lf_match"), b.accuracy("lf_match")
    rows = []
    for name, x, y in (("execution_accuracy", ex_a, ex_b), ("logical_form_accuracy", lf_a, lf_b)):
        if x and y:
            rows.append((name, x[0], y[0], f"{(y[0] - x[0]) * 100:+.2f} pts"))
    blocks.append(TableBlock(("metric", na, nb, "change"), tuple(rows)))
    blocks.append(Paragraph(
        f"Paired on {pair.n} test examples: {len(pair.fixed)} fixed (wrong in {na}, right in {nb}), "
        f"{len(pair.broken)} broken (right in {na}, wrong in {nb}); {_p_value(pair.test)}"
        + (" — the difference is not significant at 5%." if pair.test.p_value >= 0.05 else ".")))
    for title, ids in (("Fixed", pair.fixed), ("Broken", pair.broken)):
        shown = ids[:max_examples]
        more = f" (first {len(shown)} of {len(ids)}; all in comparison.json)" if len(ids) > len(shown) else ""
        blocks.append(Paragraph(f"{title}: {len(ids)}{more}"))
        if shown:
            blocks.append(TableBlock(("id", "question"), tuple((i, a.question(i) or b.question(i)) for i in shown)))
    changed = [(c, x, y, f"{y - x:+d}") for c, (x, y) in pair.categories.items()]
    blocks.append(Paragraph("Failure categories (examples per category):"))
    blocks.append(TableBlock(("category", na, nb, "change"), tuple(changed)))
    return blocks


def pair_json(records: Sequence[RunRecord], pair: PairComparison) -> dict[str, Any]:
    a, b = records[pair.a], records[pair.b]
    out: dict[str, Any] = {"a": pair.a + 1, "b": pair.b + 1, "a_run_dir": str(a.run_dir),
                           "b_run_dir": str(b.run_dir), "skipped": pair.skipped}
    if pair.test is not None:
        out.update({
            "n": pair.n, "mcnemar": vars(pair.test),
            "fixed": [{"id": i, "question": a.question(i) or b.question(i)} for i in pair.fixed],
            "broken": [{"id": i, "question": a.question(i) or b.question(i)} for i in pair.broken],
            "categories": {c: {"a": x, "b": y, "change": y - x} for c, (x, y) in pair.categories.items()},
        })
    return out


# ---------------------------------------------------------------------------------------------------------------
# The whole comparison


def run_json(index: int, record: RunRecord) -> dict[str, Any]:
    ex, lf = record.accuracy("exec_match"), record.accuracy("lf_match")
    return {"index": index + 1, "run": run_label(record), "run_dir": str(record.run_dir),
            "mlflow_run_id": record.mlflow_run_id, "status": record.status, "zero_shot": record.zero_shot,
            "execution_accuracy": ex and ex[0], "execution_accuracy_ci95": ex and [ex[1], ex[2]],
            "logical_form_accuracy": lf and lf[0], "logical_form_accuracy_ci95": lf and [lf[1], lf[2]],
            "valid_sql_rate": (record.metrics or {}).get("valid_sql_rate"), "n": record.n,
            "train_examples": record.train_examples, "train_seconds": record.train_seconds,
            "stage_seconds": {s: record.stage_seconds(s) for s in STAGES},
            "peak_memory_gib": record.peak_memory_gib, "prompt_fingerprint": record.prompt_fingerprint,
            "prompt_version": record.prompt_version, "test_ids_sha": record.test_ids_sha,
            "test_examples_sha": record.test_examples_sha, "overrides": record.overrides}


def build_comparison(records: Sequence[RunRecord], max_examples: int = 25,
                     title: str = "Run comparison") -> tuple[Document, dict[str, Any]]:
    """The comparison as a document (for .md/.html) and as JSON."""
    alerts = fingerprint_alerts(records)
    pairs = [compare_pair(records, a, b) for a, b in combinations(range(len(records)), 2)]
    doc = Document(title)
    doc.add(*alerts)
    doc.add(Heading("Runs"), metrics_table(records), Paragraph(COST_NOTE), cost_table(records), runs_table(records))
    doc.add(Heading("Pairs"))
    for pair in pairs:
        doc.add(*pair_blocks(records, pair, max_examples))
    data = {"warnings": [{"title": a.title, "lines": list(a.lines)} for a in alerts],
            "runs": [run_json(i, r) for i, r in enumerate(records)],
            "pairs": [pair_json(records, p) for p in pairs]}
    return doc, data


def write_comparison(doc: Document, data: dict[str, Any], out_dir: Path) -> list[Path]:
    paths = write_document(doc, out_dir, "comparison")
    write_json(out_dir / "comparison.json", data)
    return [paths["md"], paths["html"], out_dir / "comparison.json"]


# ---------------------------------------------------------------------------------------------------------------
# Resolving runs through MLflow


def default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{default_store(DEFAULT_OUTPUTS)}"


def tracking_configured(uri: str, explicit: bool) -> bool:
    """An explicit URI always counts; the default SQLite store only if it exists (never create one here)."""
    if explicit or not uri.startswith("sqlite:///"):
        return True
    return Path(uri.removeprefix("sqlite:///")).is_file()


def _find_mlflow_run(client, spec: str, uri: str):
    if _RUN_ID.fullmatch(spec):
        try:
            run = client.get_run(spec)
        except MlflowException:
            run = None
        if run is not None:
            if "run_dir" not in run.data.tags:
                raise RunError(f"{spec}: MLflow run (kind={run.data.tags.get('kind', 'unknown')}) is not a pipeline "
                               "run (no run_dir tag); pass the id of a run that trained or scored a model")
            return run
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        raise RunError(f"{spec}: not a run directory, and the MLflow store {uri} has no experiments")
    escaped = spec.replace("\\", "\\\\").replace("'", "\\'")
    runs = [r for r in client.search_runs(experiments, filter_string=f"attributes.run_name = '{escaped}'",
                                          order_by=["attributes.start_time DESC"])
            if "run_dir" in r.data.tags]
    if not runs:
        raise RunError(f"{spec}: not a run directory, nor the id or name of a pipeline run in MLflow store {uri}")
    if len(runs) > 1:
        listing = "; ".join(f"{r.info.run_id} ({r.data.tags.get('run_dir')})" for r in runs[:10])
        raise RunError(f"{spec}: {len(runs)} MLflow runs have that name; pass a run id or directory instead: "
                       f"{listing}")
    return runs[0]


def _download_run(client, run, dest: Path) -> Path:
    """The run's logged artifacts, for a run whose directory is not on this machine."""
    dest.mkdir(parents=True, exist_ok=True)
    got = []
    for artifact in RUN_ARTIFACTS:
        try:
            client.download_artifacts(run.info.run_id, artifact, str(dest / Path(artifact).parent))
            got.append(artifact)
        except Exception:  # an artifact this run does not have is simply absent
            continue
    if not got:
        raise RunError(f"MLflow run {run.info.run_id}: its run_dir {run.data.tags.get('run_dir')} does not exist "
                       "here and it has no comparable artifacts to download")
    return dest


def resolve_run(spec: str, client, uri: str | None, cache: Path) -> RunRecord:
    """A run directory, or an MLflow run id/name through the tracking store."""
    if Path(spec).expanduser().is_dir():
        return load_run(spec)
    if client is None:
        raise RunError(f"{spec}: not a run directory (and MLflow lookup is off: --no-mlflow, or no tracking store "
                       f"at {uri})")
    run = _find_mlflow_run(client, spec, uri or "")
    run_dir = Path(run.data.tags["run_dir"])
    if not run_dir.is_dir():
        log.warning("%s: run_dir %s not found here; using the run's MLflow artifacts", spec, run_dir)
        run_dir = _download_run(client, run, cache / run.info.run_id)
    record = load_run(run_dir)
    record.mlflow_run_id, record.run_name = run.info.run_id, run.info.run_name
    if not record.overrides and run.data.tags.get("overrides", "(none)") != "(none)":
        record.overrides = run.data.tags["overrides"].split()
    return record


def _experiment_of(client, records: Sequence[RunRecord]) -> str | None:
    """The experiment name of the first compared run the store knows."""
    for record in records:
        if not record.mlflow_run_id:
            continue
        try:
            run = client.get_run(record.mlflow_run_id)
        except MlflowException:
            continue
        return client.get_experiment(run.info.experiment_id).name
    return None


def comparison_metrics(data: dict[str, Any]) -> dict[str, float]:
    """A comparison's figures as metrics of its MLflow run: each run's headline (`run_1/execution_accuracy`) and
    each pair's paired test (`pair_1_2/p_value`, `pair_1_2/fixed`, `pair_1_2/broken`)."""
    out: dict[str, float] = {}
    for run in data["runs"]:
        for key in ("execution_accuracy", "logical_form_accuracy", "valid_sql_rate"):
            if run.get(key) is not None:
                out[f"run_{run['index']}/{key}"] = run[key]
    for pair in data["pairs"]:
        if "mcnemar" in pair:
            name = f"pair_{pair['a']}_{pair['b']}"
            out.update({f"{name}/p_value": pair["mcnemar"]["p_value"], f"{name}/fixed": len(pair["fixed"]),
                        f"{name}/broken": len(pair["broken"])})
    return out


def log_comparison(client, uri: str, records: Sequence[RunRecord], paths: Sequence[Path], data: dict[str, Any],
                   ) -> str:
    from experiments.tracking.mlflow_tracker import MlflowTracker

    experiment = _experiment_of(client, records) or str(
        (records[0].config.get("tracking") or {}).get("experiment_name") or "text2sql-lora")
    compared = ",".join(r.mlflow_run_id or str(r.run_dir) for r in records)
    # An experiment of their own: comparisons would otherwise sit at the top of the training runs' list
    tracker = MlflowTracker(uri, f"{experiment} comparisons", "compare " + " vs ".join(run_label(r) for r in records),
                            {"kind": "comparison", "compared_runs": compared[:5000], "compared_experiment": experiment,
                             "warnings": str(len(data["warnings"]))})
    status = "FAILED"
    try:
        tracker.log_params({f"run_{i + 1}": r.mlflow_run_id or r.run_dir for i, r in enumerate(records)})
        tracker.log_metrics(comparison_metrics(data))
        for path in paths:
            tracker.log_artifact(path)
        status = "FINISHED"
    finally:
        tracker.finish(status)
    return tracker.run_id


# ---------------------------------------------------------------------------------------------------------------
# Command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="experiments-compare", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directory, MLflow run id or MLflow run name")
    parser.add_argument("--out", type=Path, help="output directory (default: outputs/comparisons/<timestamp>)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or "
                        "sqlite:///outputs/mlflow.db if it exists)")
    parser.add_argument("--no-mlflow", action="store_true", help="neither resolve runs nor log through MLflow")
    parser.add_argument("--max-examples", type=int, default=25,
                        help="fixed/broken examples listed per pair in .md/.html (all are in the .json)")
    return parser


def _client(args: argparse.Namespace, needed: bool) -> tuple[Any, str | None]:
    """An MLflow client when MLflow is on and configured (reachable, for a server)."""
    if args.no_mlflow:
        return None, None
    from experiments.tracking.mlflow_tracker import TrackingUnavailable, check_reachable

    uri = args.tracking_uri or default_tracking_uri()
    if not tracking_configured(uri, explicit=bool(args.tracking_uri)):
        return None, uri
    try:
        check_reachable(uri)
    except TrackingUnavailable as err:
        if needed:
            raise RunError(str(err)) from None
        log.warning("%s; the comparison is written but not logged to MLflow", err)
        return None, uri
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri), uri


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = _parser().parse_args(argv)
    if len(args.runs) < 2:
        _parser().error("give at least two runs to compare")
    out_dir = args.out or Path(DEFAULT_OUTPUTS) / "comparisons" / datetime.datetime.now().strftime(
        "%Y-%m-%d_%H-%M-%S")
    try:
        needed = any(not Path(spec).expanduser().is_dir() for spec in args.runs)
        client, uri = _client(args, needed)
        with tempfile.TemporaryDirectory(prefix="experiments-compare-") as cache:
            records = [resolve_run(spec, client, uri, Path(cache)) for spec in args.runs]
            doc, data = build_comparison(records, max_examples=args.max_examples)
            paths = write_comparison(doc, data, out_dir)
    except (RunError, MlflowException) as err:
        print(f"experiments-compare: {err}", file=sys.stderr)
        return 2
    from experiments.analysis.document import to_markdown

    print(to_markdown(doc))
    print(f"written: {', '.join(str(p) for p in paths)}")
    if client is not None and uri is not None:
        try:
            run_id = log_comparison(client, uri, records, paths, data)
        except MlflowException as err:
            print(f"experiments-compare: the comparison is written, but logging it to MLflow ({uri}) failed: {err}",
                  file=sys.stderr)
            return 2
        print(f"logged to MLflow run {run_id} ({uri})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
