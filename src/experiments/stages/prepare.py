"""Stage 1: load the data from the configured source, draw the configured subsets, write them to the run directory.

WikiSQL writes data/{train,val,test}.jsonl, data/tables.jsonl, data/tables.sqlite (for the evaluator) and
data/report.json (sizes, what was skipped and why, fingerprints that make comparisons between runs honest:
the prompt's, and each subset's ids and examples; data/test.jsonl keeps the full list of test ids). Multi-table
sources (Spider, BIRD) write the subsets, data/databases.jsonl (the databases' schemas and SQLite paths) and the
report (`prepare_multi_table`); with eval.test_suite_path, a test database without its test-suite folder stops the
stage (`find_suite_databases`). To MLflow: the data report under `data` and the subsets as the run's dataset inputs.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

from experiments.config import ExperimentConfig
from experiments.data.fingerprints import (
    examples_fingerprint,
    ids_fingerprint,
    multi_table_prompt_fingerprint,
    prompt_fingerprint,
)
from experiments.data.multi_table_subsets import subset_pools
from experiments.data.prepared import PreparedExample, PreparedSqlExample, write_databases, write_prepared, write_tables
from experiments.data.prompt import PROMPT_VERSION
from experiments.data.records import DataError
from experiments.data.schema import Database
from experiments.data.schema_prompt import (
    MULTI_TABLE_PROMPT_VERSION,
    build_schema_prompt,
    read_example_values,
    target_sql,
)
from experiments.data.sources import load_multi_table_source, load_source
from experiments.data.subsets import SUBSET_SOURCES, draw_subset
from experiments.evaluation.suite_databases import find_suite_databases
from experiments.fileio import write_json
from experiments.runs.files import RunFiles
from experiments.sql.sqlite_tables import write_tables_sqlite
from experiments.stages.contract import Artifact, StageResult

log = logging.getLogger(__name__)


def run_prepare(cfg: ExperimentConfig, run_dir: Path) -> dict[str, Path]:
    files = RunFiles(run_dir)
    if cfg.data.source.multi_table:
        return prepare_multi_table(cfg, files)
    sources = load_source(cfg.data)
    sizes = {"train": cfg.data_size.train, "val": cfg.data_size.val, "test": cfg.data_size.test}
    report: dict = {"source": cfg.data.source.value, "path": cfg.data.path, "seed": cfg.data.seed,
                    "prompt_version": PROMPT_VERSION, "prompt_fingerprint": prompt_fingerprint(), "subsets": {}}
    used_tables = {}
    origin = f"data={cfg.data.source.value}" + (f" ({cfg.data.path})" if cfg.data.path else "")
    for subset, source_split in SUBSET_SOURCES.items():
        split = sources[source_split]
        chosen = draw_subset(split.examples, sizes[subset], cfg.data.seed, subset, f"{source_split!r} of {origin}")
        prepared = [PreparedExample.build(e, split.tables[e.table_id]) for e in chosen]
        write_prepared(files.split(subset), prepared)
        used_tables.update({e.table_id: split.tables[e.table_id] for e in chosen})
        report["subsets"][subset] = {
            "source_split": source_split, "available": len(split.examples), "requested": sizes[subset],
            "drawn": len(chosen), "skipped": split.skipped, "ids_sha": ids_fingerprint([e.id for e in chosen]),
            "examples_sha": examples_fingerprint(e.to_json() for e in chosen),
        }
        log.info("prepare: %s <- %s: %d of %d examples", subset, source_split, len(chosen), len(split.examples))
    tables = sorted(used_tables.values(), key=lambda t: t.id)
    write_tables(files.tables_jsonl, tables)
    write_tables_sqlite(files.tables_sqlite, tables)
    report["tables"] = len(tables)
    write_json(files.data_report, report)
    return {"data_dir": files.data_dir, "report": files.data_report}


def prepare_multi_table(cfg: ExperimentConfig, files: RunFiles) -> dict[str, Path]:
    """Spider, BIRD or the bundled multi-table sample: the subsets (val and test split by database where the
    release has no test split), each question's prompt with its database's schema and example values, the
    databases they use (data/databases.jsonl: schemas and SQLite paths; the files stay where they are, opened
    read-only), and the report, which counts the schemas shortened to fit data.schema_max_chars."""
    d = cfg.data
    splits = load_multi_table_source(d)
    pools = subset_pools(splits, d.seed)
    if "train" not in pools:
        raise DataError(f"data={d.source.value}: no train split was loaded from {d.path or 'the bundled sample'}")
    sizes = {"train": cfg.data_size.train, "val": cfg.data_size.val, "test": cfg.data_size.test}
    databases = {db_id: db for split in splits.values() for db_id, db in split.databases.items()}
    report: dict = {"source": d.source.value, "path": d.path, "seed": d.seed,
                    "prompt_version": MULTI_TABLE_PROMPT_VERSION,
                    "prompt_fingerprint": multi_table_prompt_fingerprint(d.schema_max_chars), "subsets": {},
                    "schema_max_chars": d.schema_max_chars, "example_values": d.example_values}
    origin = f"data={d.source.value}" + (f" ({d.path})" if d.path else "")
    values: dict[str, dict] = {}
    shortened: dict[str, Counter[str]] = {subset: Counter() for subset in pools}
    used: dict[str, Database] = {}
    for subset, pool in pools.items():
        chosen = draw_subset(pool.examples, sizes[subset], d.seed, subset, f"{pool.source} of {origin}")
        prepared = []
        for example in chosen:
            database = databases[example.db_id]
            if example.db_id not in values:
                values[example.db_id] = read_example_values(database, d.example_values)
            prompt = build_schema_prompt(example.question, database, values[example.db_id], d.schema_max_chars,
                                         evidence=example.evidence)
            shortened[subset][prompt.shortening] += 1
            prepared.append(PreparedSqlExample(example, prompt.text, target_sql(example.sql)))
            used[example.db_id] = database
        if subset == "test" and cfg.eval.test_suite_path is not None:  # a missing variant folder stops the run now
            find_suite_databases(cfg.eval.test_suite_path, {e.db_id for e in chosen})
        write_prepared(files.split(subset), prepared)
        report["subsets"][subset] = {
            "source_split": pool.source_split, "available": len(pool.examples), "requested": sizes[subset],
            "drawn": len(chosen), "skipped": splits[pool.source_split].skipped,
            "databases": len({e.db_id for e in chosen}), "schemas": dict(shortened[subset]),
            "ids_sha": ids_fingerprint([e.id for e in chosen]),
            "examples_sha": examples_fingerprint(e.to_json() for e in chosen),
        }
        over = shortened[subset]["over_budget"]
        cut = shortened[subset].total() - shortened[subset]["full"]
        log.info("prepare: %s <- %s: %d of %d questions on %d databases%s", subset, pool.source, len(chosen),
                 len(pool.examples), report["subsets"][subset]["databases"],
                 f"; {cut} schemas shortened to fit data.schema_max_chars={d.schema_max_chars}"
                 + (f", {over} still over it (kept whole)" if over else "") if cut else "")
    write_databases(files.databases_jsonl, sorted(used.values(), key=lambda db: db.id))
    report["databases"] = len(used)
    write_json(files.data_report, report)
    return {"data_dir": files.data_dir, "report": files.data_report}


def dataset_inputs(cfg: ExperimentConfig, files: RunFiles) -> list[dict[str, str]]:
    """The run's train/val/test subsets as MLflow dataset inputs: named by source and subset, with the prepare
    stage's fingerprint of their examples as the digest, so runs on the same examples show the same dataset."""
    report = json.loads(files.data_report.read_text(encoding="utf-8"))
    source = cfg.data.source.value
    where = cfg.data.path or {"sample": "bundled sample", "hub": "Salesforce/wikisql", "official": "WikiSQL release",
                              "spider_sample": "bundled multi-table sample"}.get(source, source)
    revision = cfg.data.hub_revision if source == "hub" else None
    inputs = []
    for subset, facts in report["subsets"].items():
        origin = {"uri": where, "revision": revision, "split": facts["source_split"], "examples": facts["drawn"],
                  "seed": cfg.data.seed}
        inputs.append({"name": f"{source}-{subset}", "digest": facts["examples_sha"][:36], "context": subset,
                       "source_type": "hub" if source == "hub" else "local", "source": json.dumps(origin)})
    return inputs


def run(cfg: ExperimentConfig, files: RunFiles, tracker=None) -> StageResult:
    """The stage (stages/contract.py): the prepared data; its report and dataset inputs for MLflow."""
    run_prepare(cfg, files.root)
    return StageResult(summary={"report": str(files.data_report)}, artifacts=(Artifact(files.data_report, "data"),),
                       datasets=tuple(dataset_inputs(cfg, files)))
