"""The eval stage's reading of one run: analysis.json, plots/*.png, the extended report.md and report.html.

Everything is computed from the files the run directory already holds (results rows, prepared test split,
tables, trainer_state.json when training ran), so an earlier run can be re-analysed without scoring it again. The
facts at the top of the reports are analysis/run_facts.py's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.analysis.breakdown import analyze
from experiments.analysis.document import write_html, write_markdown
from experiments.analysis.eval_report import TITLE, report_document
from experiments.analysis.plots import write_plots
from experiments.data.jsonl import iter_jsonl
from experiments.data.records import Example, Table
from experiments.fileio import write_json
from experiments.runs.files import RunFiles


def read_results(path: Path) -> list[dict[str, Any]]:
    return [row for _, row in iter_jsonl(Path(path))]


def write_run_analysis(run_dir: Path, metrics: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
                       examples: Iterable[Example], tables: Mapping[str, Table],
                       trainer_state: Path | None = None, facts: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """Analyse one run's results and write analysis.json, plots/, report.md and report.html into `run_dir` (the two
    reports from one document); returns the analysis and the paths written. Not metrics.json: the eval stage writes
    it after these."""
    files = RunFiles(run_dir)
    analysis = analyze(results, examples, tables)
    write_json(files.analysis_json, analysis)
    plots = write_plots(analysis, files.plots_dir, trainer_state)
    doc = report_document(metrics, results, analysis, plots, facts, title=f"{TITLE}: {files.root.name}")
    write_markdown(doc, files.report_md)
    write_html(doc, files.report_html)
    return {"analysis": analysis, "analysis_json": files.analysis_json, "plots": plots,
            "report_md": files.report_md, "report_html": files.report_html}
