"""Evaluation benchmark: how many predictions per second `score` scores on one CPU core (scoring only: the eval
stage's writing of results and reports is not timed).

    python benchmarks/eval_throughput.py [n_examples]      # prints the rate; gpu_benchmark.py reuses measure()

Synthetic WikiSQL-like tables and examples; predictions are a mix of verbatim gold, restyled gold (other
quoting, case, table name, condition order) and wrong SQL, so every code path is timed. Not a test: rates
depend on the machine.
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path

from experiments.data.prompt import render_sql
from experiments.data.records import Example, Query, Table
from experiments.evaluation.scoring import score
from experiments.sql.sqlite_tables import materialize_tables

HEADER = ("Player", "No.", "Nationality", "Position", "Years in Toronto", "School/Club Team", "Height (ft)")
TYPES = ("text", "real", "text", "text", "text", "text", "real")


def _table(i: int, rng: random.Random) -> Table:
    rows = tuple((f"Player {i}-{r}", float(rng.randint(1, 99)), rng.choice(["USA", "Canada", "Spain"]),
                  rng.choice(["Guard", "Forward", "Center"]), f"{1990 + r}-{91 + r}", f"School {r % 5}",
                  round(rng.uniform(5.5, 7.5), 2)) for r in range(15))
    return Table(id=f"1-{1000 + i}-1", header=HEADER, types=TYPES, rows=rows)


def _restyled(sql: str) -> str:
    sql = sql.replace('"t"', "players").replace('"', "`")
    return sql.replace("SELECT", "select").replace(" WHERE ", " where ")


def build(n: int, seed: int = 0) -> tuple[list[Example], dict[str, Table], dict[str, str]]:
    rng = random.Random(seed)
    tables = {t.id: t for t in (_table(i, rng) for i in range(max(1, n // 5)))}
    ids = list(tables)
    examples, predictions = [], {}
    for k in range(n):
        table = tables[rng.choice(ids)]
        row = rng.choice(table.rows)
        conds = ((0, 0, row[0]),) if k % 2 else ((2, 0, row[2]), (6, 1, 6.0))
        query = Query(sel=rng.choice([1, 3, 5, 6]), agg=rng.choice([0, 0, 1, 3, 4]), conds=conds)
        example = Example(id=f"test-{k}", table_id=table.id, question=f"question {k}?", query=query)
        examples.append(example)
        gold = render_sql(query, table)
        kind = k % 5
        if kind in (0, 1):
            predictions[example.id] = gold
        elif kind in (2, 3):
            predictions[example.id] = _restyled(gold) + ";"
        else:
            predictions[example.id] = render_sql(Query(sel=2, agg=query.agg, conds=query.conds), table)
    return examples, tables, predictions


def measure(n: int = 1000) -> dict:
    """Seconds and predictions/s for scoring n predictions (tables materialised beforehand, as in a run)."""
    examples, tables, predictions = build(n)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "tables.sqlite"
        start = time.perf_counter()
        materialize_tables(tables.values(), db)
        materialise_s = time.perf_counter() - start
        start = time.perf_counter()
        metrics = score(examples, tables, predictions, db, progress=False).metrics
        seconds = time.perf_counter() - start
    return {"predictions": n, "seconds": seconds, "predictions_per_s": n / seconds, "materialise_s": materialise_s,
            "execution_accuracy": metrics["execution_accuracy"],
            "logical_form_accuracy": metrics["logical_form_accuracy"]}


def main(argv: list[str]) -> None:
    n = int(argv[0]) if argv else 1000
    result = measure(n)
    seconds, materialise_s = result["seconds"], result["materialise_s"]
    print(f"{n} predictions in {seconds:.2f} s: {n / seconds:,.0f} predictions/s "
          f"(tables materialised once in {materialise_s:.2f} s); "
          f"exec acc {result['execution_accuracy']:.3f}, LF acc {result['logical_form_accuracy']:.3f}")


if __name__ == "__main__":
    main(sys.argv[1:])
