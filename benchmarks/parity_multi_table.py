"""Parity check (not a test: it needs the official evaluators, which CI cannot download): our multi-table result
comparison and Spider hardness against the official code, run out of tree on probe sets written here.

    # the official code, as git snapshots (bare git directories) or checkouts:
    #   https://github.com/taoyds/test-suite-sql-eval   (exec_eval.py, evaluation.py, process_sql.py, parse.py)
    #   https://github.com/AlibabaResearch/DAMO-ConvAI  (bird/llm/src/evaluation.py)
    # their imports, in a throwaway environment (not project dependencies): nltk, sqlparse, tqdm, func_timeout
    PYTHONPATH=src:/path/to/their/site-packages python benchmarks/parity_multi_table.py \\
        --test-suite /path/to/test-suite-sql-eval --bird /path/to/DAMO-ConvAI

What it compares:
1. Spider: exec_eval.result_eq(gold, predicted, order_matters) against ours (semantics="spider"), on every probe
   under both order flags. Rows come back from SQLite (the probe tables are written to an in-memory database and
   read back), so the values have the types an executed query gives.
2. BIRD: evaluation.execute_sql(predicted_sql, gold_sql, db_path) — their function, executing on a temporary
   SQLite file holding the probe's two tables — against ours (semantics="bird").
3. gold_orders against the official rule (`'order by' in gold_sql.lower()`): equal except on the probes marked as
   differing by design (ORDER BY only inside a subquery, a CTE or a string literal).
4. Whole verdicts on the bundled sample: for every test question, its gold SQL and variants of it as predictions
   (DISTINCT added or dropped, `count(DISTINCT x)` as `count(x)`, `> =` spaced, ORDER BY reversed, LIMIT changed,
   a constant changed, two columns swapped), each run on the question's database (a copy): exec_eval.
   eval_exec_match (its DISTINCT removal and `> =` clean-up included), with and without --keep_distinct, against
   our score_multi_table (spider, keep_distinct false / true); BIRD's execute_sql against ours (bird).
5. Hardness: Evaluator.eval_hardness on process_sql.get_sql's parse (and its three counts) against ours, on probe
   queries over the small schema below. process_sql tokenizes with nltk.word_tokenize, which needs the 'punkt'
   data; offline, the check substitutes nltk's NLTKWordTokenizer (what word_tokenize applies to each sentence:
   the same tokens for one-sentence SQL). Without nltk at all, hardness is compared with the verdicts recorded
   in HARDNESS_PROBES (obtained from the official code, and checked by hand against its rules).
Exit status 0 when every verdict agrees.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

from experiments.evaluation.hardness import hardness_counts, spider_hardness
from experiments.evaluation.multi_table_compare import gold_orders, results_equal

Rows = list[tuple[object, ...]]

ORDERED = "SELECT a, b FROM t ORDER BY a"
UNORDERED = "SELECT a, b FROM t"

# (name, gold rows, predicted rows, gold SQL)
HAND_PROBES: list[tuple[str, Rows, Rows, str]] = [
    ("both empty", [], [], UNORDERED),
    ("both empty, ordered", [], [], ORDERED),
    ("gold empty", [], [(1,)], UNORDERED),
    ("predicted empty", [(1,)], [], UNORDERED),
    ("same single row", [(1, "a")], [(1, "a")], UNORDERED),
    ("rows swapped, unordered", [(1, "a"), (2, "b")], [(2, "b"), (1, "a")], UNORDERED),
    ("rows swapped, ordered", [(1, "a"), (2, "b")], [(2, "b"), (1, "a")], ORDERED),
    ("same order, ordered", [(1, "a"), (2, "b")], [(1, "a"), (2, "b")], ORDERED),
    ("order by in a subquery only", [(1,), (2,)], [(2,), (1,)], "SELECT a FROM (SELECT a FROM t ORDER BY a LIMIT 2)"),
    ("order by in a CTE only", [(1,), (2,)], [(2,), (1,)], "WITH c AS (SELECT a FROM t ORDER BY a) SELECT a FROM c"),
    ("order by in a string", [(1,), (2,)], [(2,), (1,)], "SELECT a FROM t WHERE b = 'order by'"),
    ("order by after union", [(1,), (2,)], [(2,), (1,)], "SELECT a FROM t UNION SELECT b FROM s ORDER BY 1"),
    ("order by, odd spacing", [(1,), (2,)], [(2,), (1,)], "SELECT a FROM t ORDER  BY a"),
    ("duplicates: same set, other multiset", [(1,), (1,), (2,)], [(1,), (2,), (2,)], UNORDERED),
    ("duplicates: one copy fewer", [(1,), (1,)], [(1,)], UNORDERED),
    ("duplicates: same multiset shuffled", [(1,), (2,), (1,)], [(1,), (1,), (2,)], UNORDERED),
    ("duplicates: ordered, same", [(1,), (1,), (2,)], [(1,), (1,), (2,)], ORDERED),
    ("duplicates: ordered, moved", [(1,), (1,), (2,)], [(1,), (2,), (1,)], ORDERED),
    ("two columns swapped", [(1, "a"), (2, "b")], [("a", 1), ("b", 2)], UNORDERED),
    ("two columns swapped, ordered", [(1, "a"), (2, "b")], [("a", 1), ("b", 2)], ORDERED),
    ("two columns swapped, rows too, ordered", [(1, "a"), (2, "b")], [("b", 2), ("a", 1)], ORDERED),
    ("three columns rotated", [(1, "a", 2.5), (2, "b", 3.5)], [(2.5, 1, "a"), (3.5, 2, "b")], UNORDERED),
    ("five columns permuted", [(1, 2, 3, 4, 5), (6, 7, 8, 9, 10)], [(5, 3, 1, 4, 2), (10, 8, 6, 9, 7)], UNORDERED),
    ("five columns, values re-paired", [(1, 2, 3, 4, 5), (6, 7, 8, 9, 10)], [(1, 2, 3, 4, 10), (6, 7, 8, 9, 5)],
     UNORDERED),
    ("swap within one row only", [(1, 2), (3, 4)], [(2, 1), (3, 4)], UNORDERED),
    ("column values re-paired", [(1, "a"), (2, "b")], [(1, "b"), (2, "a")], UNORDERED),
    ("identical columns", [(1, 1), (2, 2)], [(1, 1), (2, 2)], UNORDERED),
    ("two equal columns and a third permuted", [(1, 1, "x"), (2, 2, "y")], [("x", 1, 1), ("y", 2, 2)], UNORDERED),
    ("fewer predicted columns", [(1, 2)], [(1,)], UNORDERED),
    ("more predicted columns", [(1,)], [(1, 2)], UNORDERED),
    ("more predicted columns, empty gold", [], [(1, 2)], UNORDERED),
    ("NULL vs NULL", [(None,)], [(None,)], UNORDERED),
    ("NULL vs 0", [(None,)], [(0,)], UNORDERED),
    ("NULL vs empty text", [(None,)], [("",)], UNORDERED),
    ("NULL vs 'None'", [(None,)], [("None",)], UNORDERED),
    ("NULLs in a permuted row", [(None, 1), (2, None)], [(1, None), (None, 2)], UNORDERED),
    ("1 vs 1.0", [(1,)], [(1.0,)], UNORDERED),
    ("(1, 'a') vs (1.0, 'a')", [(1, "a")], [(1.0, "a")], UNORDERED),
    ("(1, 1.5) vs (1.0, 1.5): the quick check's sort", [(1, 1.5)], [(1.0, 1.5)], UNORDERED),
    ("(10, 1) vs (10, 1.0): the quick check's sort", [(10, 1)], [(10, 1.0)], UNORDERED),
    ("(2, 10) vs (2.0, 10)", [(2, 10)], [(2.0, 10)], UNORDERED),
    ("0.1 + 0.2 vs 0.3", [(0.1 + 0.2,)], [(0.3,)], UNORDERED),
    ("float vs rounded float", [(3.333333333333333,)], [(3.33,)], UNORDERED),
    ("2**53 + 1 vs its float", [(2**53 + 1,)], [(float(2**53 + 1),)], UNORDERED),
    ("0.0 vs -0.0", [(0.0,)], [(-0.0,)], UNORDERED),
    ("'1' vs 1", [("1",)], [(1,)], UNORDERED),
    ("'a' vs 'A'", [("a",)], [("A",)], UNORDERED),
    ("trailing space", [("abc ",)], [("abc",)], UNORDERED),
    ("unicode", [("café", 1)], [(1, "café")], UNORDERED),
    ("blob vs text", [(b"ab",)], [("ab",)], UNORDERED),
    ("blob vs blob", [(b"ab", 1)], [(1, b"ab")], UNORDERED),
    ("six 0/1 columns permuted", [(1, 0, 0, 1, 1, 0), (0, 1, 1, 0, 0, 1), (1, 1, 0, 0, 1, 0)],
     [(0, 1, 1, 1, 0, 0), (1, 0, 0, 0, 1, 1), (0, 1, 1, 0, 1, 0)], UNORDERED),
    ("six 0/1 columns, no permutation", [(1, 0, 0, 1, 1, 0), (0, 1, 1, 0, 0, 1), (1, 1, 0, 0, 1, 0)],
     [(0, 1, 1, 1, 0, 0), (1, 0, 0, 0, 1, 1), (1, 0, 1, 0, 1, 0)], UNORDERED),
]


def random_probes(seed: int, count: int) -> list[tuple[str, Rows, Rows, str]]:
    """Random small results and a predicted result derived from each by one edit (or none)."""
    rng = random.Random(seed)
    pool: list[object] = [0, 1, 2, 1.0, 2.5, -3, "a", "b", "A", "", None, 0.1 + 0.2, 0.3, "1"]
    edits = ["none", "shuffle rows", "permute columns", "permute and shuffle", "duplicate a row", "drop a row",
             "change a value", "int to float", "swap two rows' values in a column"]
    probes = []
    for i in range(count):
        width, height = rng.randint(1, 5), rng.randint(1, 6)
        gold = [tuple(rng.choice(pool) for _ in range(width)) for _ in range(height)]
        predicted = [list(row) for row in gold]
        edit = edits[i % len(edits)]
        if edit in ("shuffle rows", "permute and shuffle"):
            rng.shuffle(predicted)
        if edit in ("permute columns", "permute and shuffle"):
            perm = list(range(width))
            rng.shuffle(perm)
            predicted = [[row[j] for j in perm] for row in predicted]
        if edit == "duplicate a row":
            predicted.append(list(rng.choice(predicted)))
        if edit == "drop a row":
            predicted.pop(rng.randrange(height))
        if edit == "change a value":
            rng.choice(predicted)[rng.randrange(width)] = rng.choice(pool)
        if edit == "int to float":
            predicted = [[float(v) if isinstance(v, int) else v for v in row] for row in predicted]
        if edit == "swap two rows' values in a column" and height > 1:
            col = rng.randrange(width)
            predicted[0][col], predicted[-1][col] = predicted[-1][col], predicted[0][col]
        sql = ORDERED if rng.random() < 0.4 else UNORDERED
        probes.append((f"random {seed}-{i} ({edit})", gold, [tuple(row) for row in predicted], sql))
    return probes


def big_probes() -> list[tuple[str, Rows, Rows, str]]:
    rng = random.Random(7)
    gold = [(i, f"name {i % 97}", rng.random(), i % 3) for i in range(3000)]
    permuted = [(row[2], row[0], row[3], row[1]) for row in gold]
    shuffled = list(permuted)
    rng.shuffle(shuffled)
    changed = list(shuffled)
    changed[1234] = (changed[1234][0], -1, changed[1234][2], changed[1234][3])
    return [
        ("3000 rows, columns permuted, rows shuffled", gold, shuffled, UNORDERED),
        ("3000 rows, columns permuted, rows shuffled, ordered", gold, shuffled, ORDERED),
        ("3000 rows, columns permuted, ordered", gold, permuted, ORDERED),
        ("3000 rows, one value changed", gold, changed, UNORDERED),
    ]


# Hardness probes over SCHEMA: (SQL, the official verdict, recorded from Evaluator.eval_hardness on get_sql's parse
# and checked by hand against its counting rules).
SCHEMA = {
    "singer": ["singer_id", "name", "country", "age", "song_name", "is_male"],
    "concert": ["concert_id", "concert_name", "theme", "stadium_id", "year"],
    "stadium": ["stadium_id", "location", "name", "capacity", "highest", "lowest", "average"],
    "singer_in_concert": ["concert_id", "singer_id"],
}
HARDNESS_PROBES: list[tuple[str, str]] = [
    ("SELECT count(*) FROM singer", "easy"),
    ("SELECT name FROM singer", "easy"),
    ("SELECT DISTINCT country FROM singer", "easy"),
    ("SELECT name FROM singer WHERE age > 20", "easy"),
    ("SELECT name FROM singer ORDER BY age", "easy"),
    ("SELECT max(capacity) FROM stadium", "easy"),
    ("SELECT count(DISTINCT country) FROM singer", "easy"),
    ("SELECT name FROM singer WHERE country LIKE '%an%'", "medium"),
    ("SELECT name, country, age FROM singer ORDER BY age DESC", "medium"),
    ("SELECT avg(age), min(age), max(age) FROM singer WHERE country = 'France'", "medium"),
    ("SELECT name FROM singer WHERE age > 20 AND country = 'France'", "medium"),
    ("SELECT country, count(*) FROM singer GROUP BY country", "medium"),
    ("SELECT name FROM singer ORDER BY age LIMIT 1", "medium"),
    ("SELECT T2.name FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id", "easy"),
    ("SELECT T2.name, count(*) FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id "
     "GROUP BY T1.stadium_id", "medium"),
    ("SELECT name FROM singer WHERE age > 20 OR country = 'France'", "medium"),
    ("SELECT name FROM singer WHERE country NOT LIKE '%an%'", "medium"),
    ("SELECT name FROM singer WHERE age NOT BETWEEN 20 AND 30 AND country NOT LIKE 'F%'", "extra"),
    ("SELECT name FROM singer WHERE age BETWEEN 20 AND 30", "easy"),
    ("SELECT country FROM singer GROUP BY country HAVING count(*) > 1", "easy"),
    ("SELECT country FROM singer GROUP BY country HAVING count(*) > 1 AND avg(age) > 20", "easy"),
    ("SELECT country, name FROM singer GROUP BY country, name HAVING count(*) > 1 OR max(age) > 20", "extra"),
    ("SELECT T2.name FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.stadium_id GROUP BY T1.stadium_id "
     "ORDER BY count(*) DESC LIMIT 1", "extra"),
    ("SELECT T3.name FROM singer_in_concert AS T1 JOIN concert AS T2 ON T1.concert_id = T2.concert_id "
     "JOIN singer AS T3 ON T1.singer_id = T3.singer_id WHERE T2.year = 2014", "hard"),
    ("SELECT T3.name, T2.concert_name FROM singer_in_concert AS T1 JOIN concert AS T2 ON "
     "T1.concert_id = T2.concert_id JOIN singer AS T3 ON T1.singer_id = T3.singer_id "
     "WHERE T2.year = 2014 AND T3.age > 20", "hard"),
    ("SELECT name FROM singer WHERE singer_id NOT IN (SELECT singer_id FROM singer_in_concert)", "hard"),
    ("SELECT name FROM singer WHERE age > (SELECT avg(age) FROM singer)", "hard"),
    ("SELECT name FROM singer WHERE age > (SELECT avg(age) FROM singer) AND country = 'France'", "extra"),
    ("SELECT name FROM stadium WHERE capacity BETWEEN (SELECT min(capacity) FROM stadium) "
     "AND (SELECT avg(capacity) FROM stadium)", "extra"),
    ("SELECT country FROM singer WHERE age > 40 INTERSECT SELECT country FROM singer WHERE age < 30", "hard"),
    ("SELECT name FROM singer UNION SELECT name FROM stadium", "hard"),
    ("SELECT name FROM singer EXCEPT SELECT T2.name FROM singer_in_concert AS T1 JOIN singer AS T2 "
     "ON T1.singer_id = T2.singer_id", "hard"),
    ("SELECT name FROM singer WHERE age > 40 UNION SELECT name FROM singer WHERE age < 30 ORDER BY name LIMIT 3",
     "hard"),
    ("SELECT name, age FROM singer UNION SELECT name, capacity FROM stadium", "extra"),
    ("SELECT name FROM singer UNION SELECT name FROM stadium UNION SELECT concert_name FROM concert", "hard"),
    ("SELECT country FROM singer GROUP BY country HAVING count(*) > (SELECT count(*) FROM stadium)", "hard"),
    ("SELECT count(*) FROM (SELECT country FROM singer GROUP BY country)", "easy"),
    ("SELECT T1.name FROM singer AS T1 JOIN singer_in_concert AS T2 ON T1.singer_id = T2.singer_id "
     "JOIN concert AS T3 ON T2.concert_id = T3.concert_id JOIN stadium AS T4 ON T3.stadium_id = T4.stadium_id",
     "hard"),
    ("SELECT name FROM stadium ORDER BY highest - lowest DESC LIMIT 1", "medium"),
    ("SELECT stadium_id FROM stadium GROUP BY stadium_id ORDER BY max(highest) - min(lowest) DESC", "medium"),
    ("SELECT country, max(age) FROM singer GROUP BY country ORDER BY count(*) DESC", "extra"),
    ("SELECT name, capacity FROM stadium WHERE average > 100 ORDER BY capacity DESC LIMIT 2", "hard"),
    ("SELECT name FROM singer WHERE name LIKE '%a%' OR name LIKE '%e%' OR country = 'UK'", "extra"),
    ("SELECT sum(capacity), avg(capacity) FROM stadium WHERE location = 'X' OR name LIKE 'S%'", "extra"),
    ("SELECT T1.name FROM singer AS T1 JOIN singer_in_concert AS T2 ON T1.singer_id = T2.singer_id "
     "WHERE T2.concert_id IN (SELECT concert_id FROM concert WHERE year = 2014)", "extra"),
    ("SELECT name FROM singer WHERE singer_id NOT IN (SELECT singer_id FROM singer_in_concert) "
     "AND age NOT IN (SELECT age FROM singer WHERE country = 'UK')", "extra"),
    ("SELECT country, count(*) FROM singer WHERE age > 20 GROUP BY country HAVING count(*) >= 2 "
     "ORDER BY country LIMIT 5", "extra"),
    ("SELECT location, name FROM stadium WHERE capacity > 5000 AND highest > 100 AND lowest < 10", "medium"),
]


def git_text(repo: Path, path: str) -> str:
    """A file of `repo`: a bare git directory (read at HEAD) or a checkout."""
    if (repo / path).is_file():
        return (repo / path).read_text(encoding="utf-8")
    return subprocess.run(["git", f"--git-dir={repo}", "show", f"HEAD:{path}"], check=True, capture_output=True,
                          text=True).stdout


def load_module(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def through_sqlite(rows: Rows, width: int) -> Rows:
    """`rows` written to an SQLite table and read back, with the types SQLite gives them."""
    connection = sqlite3.connect(":memory:")
    columns = ", ".join(f"c{i}" for i in range(width))
    connection.execute(f"CREATE TABLE r ({columns})")
    connection.executemany(f"INSERT INTO r VALUES ({', '.join('?' * width)})", rows)
    result = connection.execute(f"SELECT {columns} FROM r ORDER BY rowid").fetchall()
    connection.close()
    return result


def check_comparison(exec_eval: types.ModuleType, bird: types.ModuleType, work: Path) -> list[str]:
    probes = HAND_PROBES + random_probes(11, 60) + big_probes()
    failures = []
    verdicts = 0
    order_differences = []
    random.seed(0)  # exec_eval samples rows past 3 columns (only to prune; its verdict does not depend on them)
    for index, (name, gold_raw, predicted_raw, sql) in enumerate(probes):
        gold_width = len(gold_raw[0]) if gold_raw else 1
        predicted_width = len(predicted_raw[0]) if predicted_raw else gold_width
        gold = through_sqlite(gold_raw, gold_width)
        predicted = through_sqlite(predicted_raw, predicted_width)
        for order in (False, True):
            theirs = bool(exec_eval.result_eq(gold, predicted, order_matters=order))
            ours = results_equal(gold, predicted, semantics="spider", gold_orders=order)
            verdicts += 1
            if theirs != ours:
                failures.append(f"spider, order_matters={order}: {name}: official {theirs}, ours {ours}")
        db = work / f"probe{index}.sqlite"
        connection = sqlite3.connect(db)
        for table, rows, width in (("g", gold_raw, gold_width), ("p", predicted_raw, predicted_width)):
            connection.execute(f"CREATE TABLE {table} ({', '.join(f'c{i}' for i in range(width))})")
            connection.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * width)})", rows)
        connection.commit()
        connection.close()
        theirs = bool(bird.execute_sql("SELECT * FROM p", "SELECT * FROM g", str(db)))
        ours = results_equal(gold, predicted, semantics="bird", gold_orders=False)
        verdicts += 1
        if theirs != ours:
            failures.append(f"bird: {name}: official {theirs}, ours {ours}")
        official_orders = "order by" in sql.lower()
        if official_orders != gold_orders(sql):
            order_differences.append(f"{sql!r}: official {official_orders}, ours {gold_orders(sql)}")
    print(f"comparison: {len(probes)} probes, {verdicts} verdicts (Spider under both order flags, BIRD), "
          f"{len(failures)} disagreements")
    expected_differences = {"SELECT a FROM (SELECT a FROM t ORDER BY a LIMIT 2)",
                            "WITH c AS (SELECT a FROM t ORDER BY a) SELECT a FROM c",
                            "SELECT a FROM t WHERE b = 'order by'", "SELECT a FROM t ORDER  BY a"}
    print(f"gold_orders vs 'order by' in gold.lower(): {len(order_differences)} differ (by design):")
    for line in order_differences:
        print("   ", line)
    unexpected = [d for d in order_differences if not any(repr(s) in d for s in expected_differences)]
    failures += [f"gold_orders: unexpected difference {d}" for d in unexpected]
    return failures


def prediction_variants(gold: str) -> list[str]:
    """Predictions made from `gold` that the official evaluators' preprocessing and comparisons tell apart or not."""
    variants = [gold]
    if re.search(r"(?i)\bselect\s+distinct\b", gold):
        variants.append(re.sub(r"(?i)\bselect\s+distinct\s+", "SELECT ", gold, count=1))
    else:
        variants.append(re.sub(r"(?i)\bselect\s+", "SELECT DISTINCT ", gold, count=1))
    variants.append(re.sub(r"(?i)count\(\s*distinct\s+", "count(", gold))
    variants.append(gold.replace(">=", "> =").replace("<=", "< ="))
    variants.append(re.sub(r"(?i)\bdesc\b", "ASC", gold) if re.search(r"(?i)\bdesc\b", gold)
                    else re.sub(r"(?i)(order by [\w.]+)", r"\1 DESC", gold, count=1))
    variants.append(re.sub(r"(?i)\blimit (\d+)", lambda m: f"LIMIT {int(m.group(1)) + 1}", gold))
    variants.append(re.sub(r"([=<>] )(\d+)", lambda m: f"{m.group(1)}{int(m.group(2)) + 1}", gold, count=1))
    swapped = re.match(r"(?i)select (\S+), (\S+) from (.*)", gold)
    if swapped:
        variants.append(f"SELECT {swapped.group(2)}, {swapped.group(1)} FROM {swapped.group(3)}")
    return list(dict.fromkeys(variants))


def check_sample_verdicts(exec_eval: types.ModuleType, bird: types.ModuleType, work: Path) -> list[str]:
    from experiments.data.spider import load_spider
    from experiments.evaluation.multi_table_scoring import score_multi_table

    sample = Path(__file__).resolve().parents[1] / "src" / "experiments" / "data" / "spider_sample"
    split = load_spider(sample)["test"]
    databases = []
    for db_id, database in split.databases.items():  # copies: the official code opens files read-write
        copy = work / "sample" / db_id / f"{db_id}.sqlite"
        copy.parent.mkdir(parents=True, exist_ok=True)
        copy.write_bytes(Path(database.path).read_bytes())
        databases.append(types.SimpleNamespace(id=db_id, path=copy))
    paths = {d.id: d.path for d in databases}
    probes = [types.SimpleNamespace(id=f"{e.id}/{k}", db_id=e.db_id, question=e.question, sql=e.sql,
                                    difficulty=None, prediction=variant)
              for e in split.examples for k, variant in enumerate(prediction_variants(e.sql))]
    predictions = {p.id: p.prediction for p in probes}
    failures = []
    for keep_distinct in (False, True):
        ours = score_multi_table(probes, databases, predictions, semantics="spider", keep_distinct=keep_distinct,
                                 progress=False)
        for probe, result in zip(probes, ours.results, strict=True):
            theirs = bool(exec_eval.eval_exec_match(str(paths[probe.db_id]), probe.prediction, probe.sql,
                                                    False, keep_distinct, False))
            if theirs != result.exec_match:
                failures.append(f"spider sample, keep_distinct={keep_distinct}: {probe.id} {probe.prediction!r} "
                                f"(gold {probe.sql!r}): official {theirs}, ours {result.exec_match}")
    ours = score_multi_table(probes, databases, predictions, semantics="bird", progress=False)
    for probe, result in zip(probes, ours.results, strict=True):
        try:  # as BIRD's execute_model calls it: an exception scores 0
            theirs = bool(bird.execute_sql(probe.prediction, probe.sql, str(paths[probe.db_id])))
        except Exception:
            theirs = False
        if theirs != result.exec_match:
            failures.append(f"bird sample: {probe.id} {probe.prediction!r}: official {theirs}, ours "
                            f"{result.exec_match}")
    matches = sum(r.exec_match for r in ours.results)
    print(f"sample verdicts: {len(probes)} predictions on {len(split.examples)} test questions "
          f"({matches} match under BIRD's rule), {3 * len(probes)} verdicts (Spider with and without "
          f"--keep_distinct, BIRD), {len(failures)} disagreements")
    return failures


def check_hardness(test_suite: Path | None) -> list[str]:
    failures = []
    official = None
    if test_suite is not None:
        try:
            from nltk.tokenize import NLTKWordTokenizer
        except ImportError:
            print("hardness: nltk is not installed; comparing with the recorded official verdicts")
        else:
            process_sql = sys.modules["process_sql"]
            tokenizer = NLTKWordTokenizer()
            process_sql.word_tokenize = tokenizer.tokenize  # word_tokenize without punkt's sentence split
            evaluation = sys.modules["spider_evaluation"]
            schema = process_sql.Schema({t: [c.lower() for c in cols] for t, cols in SCHEMA.items()})
            official = (process_sql, evaluation, schema)
    for sql, recorded in HARDNESS_PROBES:
        ours = spider_hardness(sql)
        counts = hardness_counts(sql)
        if official is not None:
            process_sql, evaluation, schema = official
            parsed = process_sql.get_sql(schema, sql)
            theirs = evaluation.Evaluator().eval_hardness(parsed)
            their_counts = (evaluation.count_component1(parsed), evaluation.count_component2(parsed),
                            evaluation.count_others(parsed))
            if their_counts != (counts.component1, counts.component2, counts.others):
                failures.append(f"hardness counts: {sql}: official {their_counts}, ours {counts}")
            if theirs != recorded:
                failures.append(f"hardness: {sql}: official {theirs}, recorded {recorded}")
        else:
            theirs = recorded
        if theirs != ours:
            failures.append(f"hardness: {sql}: official {theirs}, ours {ours}")
    levels = {level: sum(r == level for _, r in HARDNESS_PROBES) for level in ("easy", "medium", "hard", "extra")}
    source = "Evaluator.eval_hardness" if official is not None else "the recorded verdicts"
    print(f"hardness: {len(HARDNESS_PROBES)} probes {levels} against {source}: "
          f"{sum(f.startswith('hardness') for f in failures)} disagreements")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--test-suite", type=Path, required=True, help="taoyds/test-suite-sql-eval (git dir, checkout)")
    parser.add_argument("--bird", type=Path, required=True, help="a repository holding BIRD's evaluation.py")
    parser.add_argument("--bird-path", default="bird/llm/src/evaluation.py", help="its path in that repository")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="parity_multi_table_") as tmp:
        work = Path(tmp)
        official = work / "official"
        official.mkdir()
        for name in ("exec_eval.py", "parse.py", "process_sql.py", "evaluation.py"):
            (official / name).write_text(git_text(args.test_suite, name), encoding="utf-8")
        (official / "bird_evaluation.py").write_text(git_text(args.bird, args.bird_path), encoding="utf-8")
        sys.path.insert(0, str(official))
        if importlib.util.find_spec("nltk") is None:  # process_sql imports it at the top
            sys.modules["nltk"] = types.SimpleNamespace(word_tokenize=None)  # type: ignore[assignment]
            test_suite = None
        else:
            test_suite = args.test_suite
        if importlib.util.find_spec("func_timeout") is None:  # BIRD's evaluation.py imports it; execute_sql does not
            sys.modules["func_timeout"] = types.SimpleNamespace(  # type: ignore[assignment]
                func_timeout=None, FunctionTimedOut=TimeoutError)
        exec_eval = load_module("exec_eval", official / "exec_eval.py")
        load_module("process_sql", official / "process_sql.py")
        load_module("spider_evaluation", official / "evaluation.py")
        bird = load_module("bird_evaluation", official / "bird_evaluation.py")
        started = time.perf_counter()
        failures = check_comparison(exec_eval, bird, work) + check_sample_verdicts(exec_eval, bird, work) + \
            check_hardness(test_suite)
        print(f"{time.perf_counter() - started:.1f} s")
    for failure in failures:
        print("FAIL", failure)
    print("parity: OK" if not failures else f"parity: {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
