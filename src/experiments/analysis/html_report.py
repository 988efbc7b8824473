"""report.html: one self-contained page per run (inline CSS, figures as base64 data URIs), so the MLflow artifact
viewer, a mail attachment or a browser opened offline shows everything without fetching a file.

Predictions, questions and error messages are untrusted text (a model can write `<script>`); every piece of data
goes through `html.escape`, with its control characters made visible (a NUL would be dropped by the browser, so the
page would show other SQL than was scored), and the page loads nothing from anywhere. Long texts come shortened
from the analysis (analysis/shown_text.py).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.analysis.document import png_data_uri
from experiments.analysis.shown_text import shortened, visible
from experiments.analysis.stats import format_interval
from experiments.data.jsonl import write_text

LISTED = 50  # hallucinated-column and invalid-SQL rows shown; analysis.json has them all
HEADLINE_LABELS = {"execution_accuracy": "execution accuracy", "logical_form_accuracy": "logical-form accuracy",
                   "valid_sql_rate": "valid SQL rate"}
PLOT_TITLES = {"categories": "Outcome by category", "accuracy_breakdown": "Execution accuracy by query shape",
               "aggregation_confusion": "Aggregation confusion", "loss_curves": "Training and eval loss"}
CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { margin-top: 2em; border-bottom: 1px solid #eee; }
table { border-collapse: collapse; margin: .8em 0; font-size: .92em; }
th, td { border: 1px solid #ddd; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f5f5f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre { font-family: ui-monospace, "SFMono-Regular", Menlo, monospace; font-size: .9em; }
pre { background: #f7f7f7; padding: .5em; white-space: pre-wrap; word-break: break-word; margin: .2em 0; }
.example { border-left: 3px solid #c33; padding: .2em 1em; margin: 1em 0; }
.differed { color: #a00; }
.note { color: #555; font-size: .9em; }
.warning { border: 2px solid #c00; background: #fff0f0; padding: .5em 1em; margin: 1em 0; }
figure { margin: 1em 0; }
img { max-width: 100%; border: 1px solid #eee; }
"""


def _e(value: Any) -> str:
    return html.escape(visible("" if value is None else str(value)), quote=True)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(f'<td class="num">{_e(c)}</td>' if i in numeric else f"<td>{_e(c)}</td>"
                        for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _groups(title: str, key: str, groups: Sequence[Mapping[str, Any]]) -> str:
    rows = [(g["group"], g["n"], g["successes"], f"{g['value']:.4f}", format_interval(g)) for g in groups]
    return (f"<h3>By {_e(title)}</h3>"
            + _table((key, "n", "correct", "accuracy", "95% interval"), rows, numeric=(1, 2, 3)))


def _image(path: Path, title: str) -> str:
    return (f'<figure><img alt="{_e(title)}" src="{png_data_uri(path)}">'
            f"<figcaption>{_e(title)}</figcaption></figure>")


def _sql(text: str | None) -> str:
    return "<pre>(none)</pre>" if text is None else f"<pre>{_e(text)}</pre>"


def render_html(metrics: Mapping[str, Any], analysis: Mapping[str, Any], plots: Mapping[str, Path],
                title: str = "Evaluation report", facts: Sequence[tuple[str, str]] = ()) -> str:
    """The page: what was run, headline with intervals, categories, breakdowns, confusion, figures, hallucinated
    columns, invalid SQL and examples of each failure."""
    parts = [f"<h1>{_e(title)}</h1>"]
    parts += [f'<div class="warning"><b>WARNING:</b> {_e(shortened(warning))}</div>'
              for warning in metrics.get("warnings", ())]
    if facts:
        parts.append(_table(("what was run", ""), facts))
    headline_rows = [(HEADLINE_LABELS.get(k, k), f"{v['value']:.4f}", format_interval(v),
                      f"{v['successes']} / {v['n']}") for k, v in analysis["headline"].items()]
    parts.append(_table(("metric", "value", "95% interval", "count"), headline_rows, numeric=(1,)))
    if "guided_changed" in metrics:
        parts.append(f'<p class="note">Execution-guided decoding kept another candidate than the model\'s top one for '
                     f"{_e(metrics['guided_changed'])} examples: it fixed {_e(metrics['guided_fixed'])}, broke "
                     f"{_e(metrics['guided_broke'])}; both wrong {_e(metrics['guided_both_wrong'])}, both right "
                     f"{_e(metrics['guided_both_right'])}.</p>")
    extra = [("examples", metrics.get("n")), ("predictions for unknown ids (ignored)",
                                              metrics.get("unknown_prediction_ids")),
             ("evaluation time (s)", f"{metrics.get('eval_seconds', 0.0):.2f}")]
    extra = [row for row in extra if row[1]]  # no empty rows
    parts.append(_table(("", "value"), extra, numeric=(1,)))
    parts.append('<p class="note">Execution accuracy: predicted and gold SQL return the same rows on the '
                 "question's table. Logical-form accuracy: WikiSQL's official metric. Valid SQL rate: share of "
                 "examples whose prediction ran. timeout, too_many_rows, memory_limit: the prediction passed the time "
                 "limit, the row cap or the memory cap. Intervals: 95% Wilson score intervals.</p>")

    parts.append("<h2>Categories</h2>")
    category_rows = [(name, v["count"], f"{v['share']:.1%}") for name, v in analysis["categories"].items()
                     if v["count"]]
    parts.append(_table(("category", "count", "share"), category_rows, numeric=(1, 2)))

    parts.append("<h2>Execution accuracy by query shape</h2>")
    parts.append(_groups("gold aggregation", "aggregation", analysis["by_aggregation"]))
    parts.append(_groups("number of conditions", "conditions", analysis["by_condition_count"]))
    parts.append(_groups("operator", "operator", analysis["by_operator"]))
    parts.append('<p class="note">An example counts once for each operator its gold conditions use.</p>')

    confusion = analysis["aggregation_confusion"]
    parts.append("<h2>Aggregation confusion</h2>")
    parts.append('<p class="note">Rows: gold aggregation; columns: aggregation of the predicted SQL parsed back '
                 "into a logical form (unparsed: no prediction, or not a WikiSQL-shaped query).</p>")
    confusion_rows = [(label, *row) for label, row in zip(confusion["gold"], confusion["counts"], strict=True)
                      if any(row)]  # gold aggregations the test split does not have: no row
    parts.append(_table(("gold / predicted", *confusion["predicted"]), confusion_rows,
                        numeric=range(1, len(confusion["predicted"]) + 1)))

    if plots:
        parts.append("<h2>Figures</h2>")
        parts += [_image(path, PLOT_TITLES.get(name, name)) for name, path in plots.items()]

    hallucinated = analysis["hallucinated_columns"]
    parts.append(f"<h2>Hallucinated columns ({len(hallucinated)} predictions)</h2>")
    if hallucinated:
        parts.append(_table(("column", "predictions"), list(analysis["hallucinated_column_counts"].items()),
                            numeric=(1,)))
        rows = [(h["id"], ", ".join(h["columns"]) or "(not found in the SQL)", h["pred_sql"], h["error"])
                for h in hallucinated[:LISTED]]
        parts.append(_table(("id", "columns not in the table", "predicted SQL", "error"), rows))
        parts.append(_more(len(hallucinated)))
    else:
        parts.append("<p>None.</p>")

    invalid = analysis["invalid_sql"]
    parts.append(f"<h2>Invalid SQL ({len(invalid)} predictions)</h2>")
    if invalid:
        rows = [(i["id"], i["category"], i["error"], i["pred_sql"]) for i in invalid[:LISTED]]
        parts.append(_table(("id", "category", "error", "predicted SQL"), rows))
        parts.append(_more(len(invalid)))
    else:
        parts.append("<p>None.</p>")

    if analysis["examples"]:
        parts.append("<h2>Examples of failures</h2>")
    for category, found in analysis["examples"].items():
        count = analysis["categories"].get(category, {}).get("count", len(found))
        parts.append(f"<h3>{_e(category)} ({_e(count)})</h3>")
        for example in found:
            parts.append(f'<div class="example"><p><b>{_e(example["id"])}</b>: {_e(example["question"])}</p>'
                         f"<p>gold:</p>{_sql(example['gold_sql'])}<p>predicted:</p>{_sql(example['pred_sql'])}"
                         f'<p class="differed">what differed: {_e(example["what_differed"])}</p></div>')
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n")


def _more(total: int) -> str:
    return f'<p class="note">... and {total - LISTED} more (analysis.json lists them all)</p>' if total > LISTED else ""


def write_html(metrics: Mapping[str, Any], analysis: Mapping[str, Any], plots: Mapping[str, Path], path: Path,
               title: str = "Evaluation report", facts: Sequence[tuple[str, str]] = ()) -> Path:
    path = Path(path)
    write_text(path, render_html(metrics, analysis, plots, title, facts))
    return path
