"""Stage 1: load WikiSQL from the configured source, draw the configured subsets, write them to the run directory.

Writes data/{train,val,test}.jsonl, data/tables.jsonl, data/tables.sqlite (for the evaluator) and
data/report.json (sizes, what was skipped and why, fingerprints that make comparisons between runs honest:
the prompt's, and each subset's ids and examples; data/test.jsonl keeps the full list of test ids).
"""

from __future__ import annotations

import logging
from pathlib import Path

from experiments.config import ExperimentConfig
from experiments.data.fingerprints import examples_fingerprint, ids_fingerprint, prompt_fingerprint
from experiments.data.jsonl import write_json
from experiments.data.prepared import PreparedExample, write_prepared, write_tables
from experiments.data.prompt import PROMPT_VERSION
from experiments.data.sources import load_source
from experiments.data.subsets import SUBSET_SOURCES, draw_subset
from experiments.runs.files import RunFiles
from experiments.sql.sqlite_tables import write_tables_sqlite

log = logging.getLogger(__name__)


def run_prepare(cfg: ExperimentConfig, run_dir: Path) -> dict[str, Path]:
    files = RunFiles(run_dir)
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
