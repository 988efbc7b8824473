"""WikiSQL from the Hugging Face Hub (`Salesforce/wikisql`), read from its Parquet conversion.

`datasets` 4+ no longer runs the dataset's loading script, so we read revision `refs/convert/parquet`, where each
example carries its table inline and conditions are stored column-wise:
`sql{sel, agg, conds{column_index, operator_index, condition}}`, `table{id, header, types, rows, ...}`.
A local directory of Parquet or JSON files in that same schema works too (that is how the tests run offline).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from experiments.data.records import (
    DataError,
    Example,
    Query,
    SplitData,
    Table,
    release_query,
)

HUB_DATASET = "Salesforce/wikisql"
HUB_SPLITS = {"train": "train", "dev": "validation", "test": "test"}  # our split name -> the Hub's


def _real_cell(value: Any) -> Any:
    """The Hub stores every cell as a string; real columns become numbers where they parse."""
    if isinstance(value, str):
        try:
            return float(value.replace(",", ""))
        except ValueError:
            return value
    return value


def table_from_hub(obj: Mapping[str, Any]) -> Table:
    header = tuple(str(h) for h in obj["header"])
    types = tuple(str(t) for t in (obj.get("types") or ["text"] * len(header)))
    rows = tuple(
        tuple(_real_cell(cell) if kind == "real" else cell for cell, kind in zip(row, types, strict=False))
        for row in obj["rows"]
    )
    return Table(id=str(obj["id"]), header=header, types=types, rows=rows)


def query_from_hub(sql: Mapping[str, Any]) -> Query:
    conds = sql.get("conds") or {}
    if isinstance(conds, Mapping):  # column-wise, as in the Parquet conversion
        triples = zip(conds.get("column_index", []), conds.get("operator_index", []), conds.get("condition", []),
                      strict=True)
    else:  # already row-wise [[col, op, value], ...]
        triples = (tuple(c) for c in conds)
    return release_query(sql["sel"], sql["agg"], triples)


def split_from_rows(split: str, rows: Iterable[Mapping[str, Any]], origin: str) -> SplitData:
    """Convert one split of Hub-schema rows; row n becomes example `{split}-{n}`."""
    data = SplitData(name=split, examples=[], tables={})
    for n, row in enumerate(rows):
        where = f"{origin} split {split!r} row {n}"
        try:
            table = data.tables.get(str(row["table"]["id"])) or table_from_hub(row["table"])
            example = Example(id=f"{split}-{n}", table_id=table.id, question=str(row["question"]),
                              query=query_from_hub(row["sql"]))
        except (KeyError, TypeError, ValueError) as err:
            raise DataError(f"{where}: not in the Hub's WikiSQL schema ({err!r})") from None
        data.tables[table.id] = table
        data.admit(example, where)  # the official loader's rule, so both sources draw the same subsets
    return data


def _local_files(directory: Path, hub_split: str) -> tuple[str, list[str]]:
    for builder, suffixes in (("parquet", (".parquet",)), ("json", (".jsonl", ".json"))):
        files = sorted(str(p) for p in directory.rglob("*") if p.suffix in suffixes and
                       (p.parent.name == hub_split or p.name.startswith(hub_split)))
        if files:
            return builder, files
    raise DataError(f"{directory}: no Parquet or JSON files for split {hub_split!r} (expected e.g. "
                    f"{hub_split}.parquet or default/{hub_split}/0000.parquet)")


def _load_remote(datasets, name: str, revision: str, split: str, cache_dir: str | None):
    """One split from the Hub (or the local `datasets` cache); any failure becomes one DataError that says how to
    run without the Hub, instead of a traceback from inside `datasets`."""
    try:
        return datasets.load_dataset(name, revision=revision, split=split, cache_dir=cache_dir)
    except Exception as err:  # ConnectionError offline, DatasetNotFoundError, HTTP errors, a broken cache...
        cause = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise DataError(
            f"data=hub: cannot load {name}@{revision} (split {split!r}) from the Hugging Face Hub: "
            f"{type(err).__name__}: {cause}. Offline, or without access to the Hub, either point at a copy of the "
            "WikiSQL release with `data=official data.path=DIR_OR_TARBALL` (a directory with train/dev/test .jsonl "
            "and .tables.jsonl, or data.tar.bz2), or, with the dataset already in the Hugging Face cache, set "
            "HF_HUB_OFFLINE=1") from None


def load_hub(path: str | None, revision: str, cache_dir: str | None = None) -> dict[str, SplitData]:
    """All three splits from the Hub id (default Salesforce/wikisql) or a local directory in the Hub's schema."""
    import datasets  # imported here: it is slow to import and only this source needs it

    local = Path(path).expanduser() if path else None
    result: dict[str, SplitData] = {}
    for split, hub_split in HUB_SPLITS.items():
        if local is not None and local.is_dir():
            builder, files = _local_files(local, hub_split)
            rows = datasets.load_dataset(builder, data_files={hub_split: files}, split=hub_split, cache_dir=cache_dir)
            origin = str(local)
        else:
            name = path or HUB_DATASET
            rows = _load_remote(datasets, name, revision, hub_split, cache_dir)
            origin = f"{name}@{revision}"
        result[split] = split_from_rows(split, rows, origin)
    return result
