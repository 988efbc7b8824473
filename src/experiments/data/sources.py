"""`data.source` -> the three source splits (train, dev, test), whichever way the user has WikiSQL."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from experiments.config import DataConfig, DataSource
from experiments.data.hub import load_hub
from experiments.data.official import RELEASE_URL, load_release, load_split
from experiments.data.records import SOURCE_SPLITS, DataError, SplitData


def sample_dir() -> Path:
    """The WikiSQL-format sample bundled with the package (official layout)."""
    return Path(str(files("experiments.data") / "sample"))


def default_cache_dir(cfg: DataConfig) -> Path:
    return Path(cfg.cache_dir).expanduser() if cfg.cache_dir else Path.home() / ".cache" / "experiments"


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
