"""A hostile predictions file (issue 15): every prediction categorised, nothing crashes, no table changes, no
file appears, every output is valid UTF-8 JSON, in bounded time and memory, through `score` with the eval stage's
writer and through the CLI."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import long_text_sql, players_table, run_cli, write_release

from experiments.data.records import Example, Query, Table
from experiments.evaluation import CATEGORIES, materialize_tables, sqlite_table_name

TEXT_90K = long_text_sql("a", 4, 9)
PATTERN_40K = long_text_sql("a", 4, 4)  # the GLOB/LIKE pattern: 6 s per call against a long text, unbounded
CHARSET_5K = f"{long_text_sql('b', 3, 5)} || 'a'"  # trim() with it: ~1 s per call that SQLite cannot interrupt
ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)"
RIGHT = "SELECT \"No.\" FROM t WHERE Player = 'Antonio Lang'"
TIMEOUT_S = 1.0  # eval.timeout_s's default

HOSTILE: list[tuple[str, str | None, set[str]]] = [
    ("lone surrogate in a value", "SELECT \"No.\" FROM t WHERE Player = '\ud800'", {"wrong_where"}),
    ("lone surrogate as a column", 'SELECT "\udfff" FROM t', {"unknown_column"}),
    ("lone surrogate in a comment", RIGHT + " -- \udbff\u00e9", {"correct"}),
    ("10 GLOBs with a 40,000-character pattern",
     "SELECT count(*) FROM t WHERE " + " OR ".join([f"{TEXT_90K} GLOB '*' || {PATTERN_40K} || 'b'"] * 10),
     {"timeout"}),
    ("LIKE with a 40,000-character pattern", f"SELECT count(*) FROM t WHERE {TEXT_90K} LIKE '%' || {PATTERN_40K}",
     {"timeout"}),
    ("10 trims SQLite cannot interrupt", "SELECT " + " + ".join([f"length(ltrim({TEXT_90K}, {CHARSET_5K}))"] * 10)
     + " FROM t", {"timeout"}),
    ("1 MB of SQL", "SELECT 1 -- " + "x" * 1_000_000, {"other"}),
    ("10,000 rows of 90 KB", f"{ENDLESS.replace('FROM c', 'FROM c WHERE x < 10000')} SELECT {TEXT_90K} FROM c",
     {"memory_limit"}),
    ("one row of 1,999 x 90 KB", f"WITH c(x) AS (SELECT {TEXT_90K}) SELECT " + ", ".join(["x"] * 1999) + " FROM c",
     {"memory_limit"}),
    ("sorting an endless CTE", f"{ENDLESS} SELECT x FROM c ORDER BY x DESC LIMIT 1", {"timeout", "memory_limit"}),
    ("endless recursive CTE", f"{ENDLESS} SELECT count(*) FROM c", {"timeout"}),
    ("11-way cross join", "SELECT count(*) FROM t a, t b, t c, t d, t e, t f, t g, t h, t i, t j, t k", {"timeout"}),
    ("DROP", "DROP TABLE t", {"forbidden_statement"}),
    ("DELETE", "DELETE FROM t", {"forbidden_statement"}),
    ("INSERT", "INSERT INTO t (Player) VALUES ('x')", {"forbidden_statement"}),
    ("UPDATE", "UPDATE t SET \"No.\" = 0", {"forbidden_statement"}),
    ("CREATE", "CREATE TABLE evil (x)", {"forbidden_statement"}),
    ("two statements", RIGHT + "; DROP TABLE t", {"forbidden_statement"}),
    ("ATTACH", "ATTACH DATABASE '{tmp}/evil.db' AS evil", {"forbidden_statement"}),
    ("VACUUM INTO", "VACUUM INTO '{tmp}/copy.db'", {"forbidden_statement"}),
    ("writefile", "SELECT writefile('{tmp}/out.txt', 'x')", {"forbidden_statement", "other"}),
    ("load_extension", "SELECT load_extension('{tmp}/evil.so')", {"forbidden_statement"}),
    ("PRAGMA writable_schema", "PRAGMA writable_schema = 1", {"forbidden_statement"}),
    ("PRAGMA query_only", "PRAGMA query_only = 0", {"forbidden_statement"}),
    ("a pragma function", "SELECT * FROM pragma_table_info('t')", {"forbidden_statement"}),
    ("sql: null", None, {"missing_prediction"}),
    ("the right answer, after all of the above", RIGHT, {"correct"}),
]
IDS = [f"test-{i}" for i in range(len(HOSTILE))]
TABLE = players_table(("Player", "No.", "School/Club Team"))
SECRET = Table(id="1-999-1", header=("Secret",), types=("text",), rows=(("hidden",),))
QUERY = Query(sel=1, agg=0, conds=((0, 0, "Antonio Lang"),))  # What number did Antonio Lang wear?
OUTPUTS = ("results.jsonl", "metrics.json", "report.md", "official_source.jsonl", "official_predictions.jsonl",
           "official_tables.jsonl", "official_tables.db", "analysis.json", "report.html")


def write_predictions(path: Path, tmp: Path) -> Path:
    """The hostile file: the lines above, JSON-escaped as a model's output would be, plus one unknown id."""
    lines = [{"id": pid, "sql": None if sql is None else sql.replace("{tmp}", str(tmp))}
             for pid, (_, sql, _) in zip(IDS, HOSTILE, strict=True)]
    lines.append({"id": "dev-7", "sql": RIGHT})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="ascii")
    return path


def read_outputs(out_dir: Path, names: tuple[str, ...]) -> dict[str, list]:
    """Every text output decoded strictly as UTF-8; JSON and JSON lines parsed."""
    parsed: dict[str, list] = {}
    for name in names:
        if name.endswith(".db"):
            continue
        text = (out_dir / name).read_bytes().decode("utf-8")  # raises on invalid UTF-8
        if name.endswith(".jsonl"):
            parsed[name] = [json.loads(line) for line in text.splitlines()]
        elif name.endswith(".json"):
            parsed[name] = [json.loads(text)]
    return parsed


def contents(db: Path) -> list:
    conn = sqlite3.connect(db)
    try:
        names = [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return [(n, conn.execute(f'SELECT * FROM "{n}" ORDER BY rowid').fetchall()) for n in names]
    finally:
        conn.close()


def assert_categories(results: list[dict]) -> None:
    assert [r["id"] for r in results] == IDS
    for (name, _, expected), result in zip(HOSTILE, results, strict=True):
        assert result["category"] in expected, (name, result["category"], result["error"])
        assert result["category"] in CATEGORIES


SCORE = """
import json, resource, sys, time
from pathlib import Path
from experiments.data.records import Example, Table
from experiments.evaluation import read_predictions, score
from experiments.stages.evaluate import write_outputs
spec = json.loads(Path(sys.argv[1]).read_text())
examples = [Example.from_json(e) for e in spec["examples"]]
tables = {t["id"]: Table.from_json(t) for t in spec["tables"]}
start = time.perf_counter()
predictions = read_predictions(Path(spec["predictions"]), expected_ids={e.id for e in examples})
scored = score(examples, tables, predictions, Path(spec["db"]), progress=False)
write_outputs(Path(spec["out"]), scored, examples, tables)  # as the eval stage writes them
metrics = scored.metrics
# this process's own peak: its ru_maxrss would also count the test runner it was started from (Linux keeps the
# parent's high-water mark across fork + exec), which is large once earlier tests have loaded models
own = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) / 1024
print(json.dumps({"seconds": time.perf_counter() - start, "parent_peak_rss_mib": own,
                  "worker_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                  "metrics": metrics}))
"""


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The hostile file scored once by `read_predictions` + `score` + the eval stage's `write_outputs` in a fresh
    interpreter, so that its wall time and the peak memory of the evaluator and of its SQL workers are its own."""
    tmp = tmp_path_factory.mktemp("hostile")
    db = tmp / "data" / "tables.sqlite"
    materialize_tables([TABLE, SECRET], db)
    before = contents(db)
    examples = [Example(pid, TABLE.id, "What number did Antonio Lang wear?", QUERY) for pid in IDS]
    spec = {"examples": [e.to_json() for e in examples], "tables": [TABLE.to_json(), SECRET.to_json()],
            "predictions": str(write_predictions(tmp / "predictions.jsonl", tmp)), "db": str(db),
            "out": str(tmp / "out")}
    (tmp / "spec.json").write_text(json.dumps(spec))
    listing = sorted(p.name for p in tmp.iterdir())
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", SCORE, str(tmp / "spec.json")], capture_output=True, text=True,
                          timeout=600)
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-3000:]
    return {"tmp": tmp, "db": db, "before": before, "listing": listing, "seconds": seconds,
            **json.loads(done.stdout.splitlines()[-1])}


def test_every_hostile_prediction_is_categorised(scored: dict) -> None:
    outputs = read_outputs(scored["tmp"] / "out", OUTPUTS)
    results = outputs["results.jsonl"]
    assert_categories(results)
    metrics = outputs["metrics.json"][0]
    assert metrics == scored["metrics"]
    assert metrics["n"] == len(HOSTILE) and sum(metrics["categories"].values()) == len(HOSTILE)
    assert metrics["categories"]["correct"] == 2
    assert metrics["unknown_prediction_ids"] == 1 and "'dev-7'" in metrics["warnings"][0]
    assert len(outputs["official_predictions.jsonl"]) == len(HOSTILE)


def test_hostile_text_survives_every_output(scored: dict) -> None:
    out = scored["tmp"] / "out"
    results = read_outputs(out, OUTPUTS)["results.jsonl"]
    assert results[0]["pred_sql"] == HOSTILE[0][1]  # the lone surrogate, kept exactly
    assert "\udfff" in results[1]["pred_sql"] and results[1]["error"]
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "\\ud800" in report  # shown as an escape, not lost
    assert "> **WARNING**: 1 of" in report and "'dev-7'" in report


def test_no_table_changes_and_no_file_appears(scored: dict) -> None:
    assert contents(scored["db"]) == scored["before"]
    tmp = scored["tmp"]
    assert sorted(p.name for p in tmp.iterdir()) == sorted([*scored["listing"], "out"])
    assert sorted(p.name for p in (tmp / "data").iterdir()) == ["tables.sqlite"]
    assert sorted(p.name for p in (tmp / "out").iterdir()) == sorted([*OUTPUTS, "plots"])  # no temp file left


def test_hostile_file_is_scored_in_bounded_time_and_memory(scored: dict) -> None:
    assert scored["seconds"] < 30  # the bound; ~8 s here, most of it the 5 queries that hit 1 s
    assert scored["metrics"]["eval_seconds"] < 30
    assert scored["worker_peak_rss_mib"] < 256  # the memory bombs asked for 0.9 GB and 180 MB
    assert scored["parent_peak_rss_mib"] < 512


def test_eval_stage_scores_the_hostile_file(tmp_path: Path) -> None:
    release = write_release(tmp_path / "release", examples_per_split=len(HOSTILE))
    rows = [json.loads(line) for line in (release / "test.jsonl").read_text().splitlines()]
    for row in rows:  # every question: what number did Antonio Lang wear?
        row["sql"]["conds"] = [[0, 0, "antonio lang"]]
    (release / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    table = json.loads((release / "test.tables.jsonl").read_text())
    table["rows"] += [[f"Player {i}", 50 + i, "Duke", "2000", 6.5] for i in range(4)]  # a cross join that lasts
    (release / "test.tables.jsonl").write_text(json.dumps(table) + "\n")
    predictions = write_predictions(tmp_path / "predictions.jsonl", tmp_path)
    run_dir = tmp_path / "run"
    start = time.perf_counter()
    result = run_cli("experiment=smoke", "stages=[prepare,eval]", f"eval.predictions={predictions}", "data=official",
                     f"data.path={release}", "data_size.train=null", "data_size.val=null", "data_size.test=null",
                     "tracking=none", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert time.perf_counter() - start < 30
    outputs = read_outputs(run_dir, OUTPUTS)
    assert_categories(outputs["results.jsonl"])
    assert "WARNING" in (run_dir / "report.html").read_text(encoding="utf-8")
    assert f"1 of {len(HOSTILE) + 1} predictions have ids that are not test examples" in result.stdout + result.stderr
    stored = dict(contents(run_dir / "data" / "tables.sqlite"))[sqlite_table_name(table["id"])]
    assert [row[:2] for row in stored] == [(r[0], float(r[1])) for r in table["rows"]]
    assert not {"evil.db", "copy.db", "out.txt"} & {p.name for p in tmp_path.iterdir()}
