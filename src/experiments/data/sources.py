"""`data.source` -> the source splits (train, dev, test), whichever way the user has WikiSQL, Spider or BIRD."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from experiments.config import DataConfig, DataSource
from experiments.data.hub import load_hub
from experiments.data.official import RELEASE_URL, load_release, load_split
from experiments.data.records import SOURCE_SPLITS, DataError, SplitData
from experiments.data.schema import MultiTableSplit
from experiments.data.spider import load_bird, load_spider


def sample_dir() -> Path:
    """The WikiSQL-format sample bundled with the package (official layout)."""
    return Path(str(files("experiments.data") / "sample"))


def default_cache_dir(cfg: DataConfig) -> Path:
    return Path(cfg.cache_dir).expanduser() if cfg.cache_dir else Path.home() / ".cache" / "experiments"


def spider_sample_dir() -> Path:
    """The multi-table sample bundled with the package (Spider's layout)."""
    return Path(str(files("experiments.data") / "spider_sample"))


def load_multi_table_source(cfg: DataConfig) -> dict[str, MultiTableSplit]:
    """Load the splits of a multi-table source (Spider, BIRD, the bundled Spider-layout sample)."""
    if cfg.source == DataSource.spider_sample:
        return load_spider(Path(cfg.path).expanduser() if cfg.path else spider_sample_dir())
    if cfg.source == DataSource.spider:
        return load_spider(Path(str(cfg.path)).expanduser())
    if cfg.source == DataSource.bird:
        return load_bird(Path(str(cfg.path)).expanduser())
    raise DataError(f"data.source={cfg.source.value}: not a multi-table source (spider, bird, spider_sample)")


def load_source(cfg: DataConfig) -> dict[str, SplitData]:
    """Load train/dev/test from the configured source."""
    if cfg.source == DataSource.sample:
        directory = Path(cfg.path).expanduser() if cfg.path else sample_dir()
        return {split: load_split(directory, split) for split in SOURCE_SPLITS}
    if cfg.source == DataSource.official:
        return load_release(cfg.path or RELEASE_URL, default_cache_dir(cfg))
    if cfg.source == DataSource.hub:
        return load_hub(cfg.path, cfg.hub_revision, cfg.cache_dir)
    raise DataError(f"data.source={cfg.source!r}: expected one of sample, official, hub")
