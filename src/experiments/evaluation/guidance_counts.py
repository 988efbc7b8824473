"""What execution-guided decoding did, known only at evaluation time: for each example where guidance kept
another candidate than the model's top one, whether that fixed the answer or broke it (the top candidate is scored
too, against the same gold)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.data.jsonl import iter_jsonl
from experiments.data.records import Example, Table
from experiments.evaluation.multi_table_scoring import DatabaseFile, MultiTableExample, score_multi_table
from experiments.evaluation.scoring import score


def read_top_candidates(path: Path) -> dict[str, str] | None:
    """{id: the model's top SQL} for the examples where guidance kept another candidate; None when the file holds
    no guidance record (a run without execution-guided decoding, or any user's file of {"id", "sql"})."""
    guided, top = False, {}
    for _, row in iter_jsonl(Path(path)):
        if "guided_reason" in row:
            guided = True
            if row.get("candidate") and isinstance(row.get("top_sql"), str):
                top[str(row["id"])] = row["top_sql"]
    return top if guided else None


def guidance_metrics(examples: Sequence[Example], tables: Mapping[str, Table], results: Sequence[Mapping[str, Any]],
                     top_sql: Mapping[str, str], db_path: Path, *, timeout_s: float, max_rows: int) -> dict[str, int]:
    """Counts over the WikiSQL examples where guidance changed the kept SQL: fixed (kept right, top wrong), broke
    (kept wrong, top right), and the rest."""
    changed = [e for e in examples if e.id in top_sql]
    if not changed:
        return _counts(results, {})
    tops = score(changed, tables, {e.id: top_sql[e.id] for e in changed}, db_path, timeout_s=timeout_s,
                 max_rows=max_rows, progress=False).results
    return _counts(results, {t.id: t.exec_match for t in tops})


def multi_table_guidance_metrics(examples: Sequence[MultiTableExample], databases: Mapping[str, DatabaseFile],
                                 results: Sequence[Mapping[str, Any]], top_sql: Mapping[str, str],
                                 **scoring: Any) -> dict[str, int]:
    """The same counts on multi-table data, the top candidates scored on their questions' databases as the kept
    SQL was (score_multi_table with the same `scoring` keywords: semantics, limits)."""
    changed = [e for e in examples if e.id in top_sql]
    if not changed:
        return _counts(results, {})
    tops = score_multi_table(changed, databases, {e.id: top_sql[e.id] for e in changed}, progress=False,
                             **scoring).results
    return _counts(results, {t.id: t.exec_match for t in tops})


def _counts(results: Sequence[Mapping[str, Any]], top_matches: Mapping[str, bool]) -> dict[str, int]:
    """{guided_changed, guided_fixed, ...} from the kept SQL's results and, where guidance changed it, whether the
    top candidate matched."""
    kept = {r["id"]: bool(r["exec_match"]) for r in results}
    pairs = [(kept[i], bool(top)) for i, top in top_matches.items()]
    return {"guided_changed": len(pairs),
            "guided_fixed": sum(k and not t for k, t in pairs),
            "guided_broke": sum(t and not k for k, t in pairs),
            "guided_both_wrong": sum(not k and not t for k, t in pairs),
            "guided_both_right": sum(k and t for k, t in pairs)}
