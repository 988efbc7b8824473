"""Stage 1: load WikiSQL from the configured source, draw the configured subsets, write them to the run directory.

Writes data/{train,val,test}.jsonl, data/tables.jsonl, data/tables.sqlite (for the evaluator) and
data/report.json (sizes, what was skipped and why, fingerprints that make comparisons between runs honest:
the prompt's, and each subset's ids and examples; data/test.jsonl keeps the full list of test ids). To MLflow: the
data report under `data` and the subsets as the run's dataset inputs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from experiments.config import ExperimentConfig
from experiments.data.fingerprints import examples_fingerprint, ids_fingerprint, prompt_fingerprint
from experiments.data.prepared import PreparedExample, write_prepared, write_tables
from experiments.data.prompt import PROMPT_VERSION
from experiments.data.sources import load_source
from experiments.data.subsets import SUBSET_SOURCES, draw_subset
from experiments.fileio import write_json
from experiments.runs.files import RunFiles
from experiments.sql.sqlite_tables import write_tables_sqlite
from experiments.stages.contract import Artifact, StageResult

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


def dataset_inputs(cfg: ExperimentConfig, files: RunFiles) -> list[dict[str, str]]:
    """The run's train/val/test subsets as MLflow dataset inputs: named by source and subset, with the prepare
    stage's fingerprint of their examples as the digest, so runs on the same examples show the same dataset."""
    report = json.loads(files.data_report.read_text(encoding="utf-8"))
    source = cfg.data.source.value
    where = cfg.data.path or {"sample": "bundled sample", "hub": "Salesforce/wikisql", "official": "WikiSQL release"}[
        source]
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
