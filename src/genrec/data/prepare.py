"""``prepare``: a dataset name (or your own file) -> a stored, ready Dataset.

Presets are looked up in ``presets.PRESETS``, their raw files found or fetched by ``sources``,
parsed by their reader and indexed by ``ingest.build_dataset``. Prepared datasets live in
``$GENREC_HOME/datasets/<name>[@filters]`` and are reused until ``force=True``.

Example:
    >>> ds = prepare("ml-100k")                                              # doctest: +SKIP
    >>> ds = prepare("shop", path="log.csv", fmt="csv", mapping={"user": "uid", "item": "sku"})
"""

from __future__ import annotations

import importlib
import warnings
from pathlib import Path
from typing import Any

from genrec.data.dataset import DataError, Dataset
from genrec.data.formats import RawData
from genrec.data.ingest import Filters, build_dataset
from genrec.data.presets import PRESETS, get_preset
from genrec.data.sources import genrec_home, resolve_raw_dir

__all__ = ["prepare", "load_dataset", "dataset_dir", "read_raw"]


def dataset_dir(name: str, filters: Filters = Filters()) -> Path:
    return genrec_home() / "datasets" / f"{name}{filters.suffix()}"


def read_raw(name: str, raw_dir: Path | None = None, download: bool = True) -> tuple[RawData, str]:
    """Find and parse a preset's raw files; returns (RawData, where they came from)."""
    preset = get_preset(name)
    folder = resolve_raw_dir(preset, raw_dir, download=download)
    module, fn = preset.reader.split(":")
    reader = getattr(importlib.import_module(f"genrec.data.formats.{module}"), fn)
    return reader(folder, **preset.reader_args), str(folder)


def prepare(
    name: str,
    *,
    filters: Filters = Filters(),
    raw_dir: str | Path | None = None,
    path: str | Path | None = None,
    fmt: str | None = None,
    mapping: dict[str, Any] | None = None,
    force: bool = False,
    download: bool = True,
) -> Dataset:
    """Prepare ``name`` (a preset, or any name with ``path`` + ``mapping``) and store it.

    A prepared preset is reused unless ``force``; an explicit ``path`` is always re-read.
    """
    out = dataset_dir(name, filters)
    if out.is_dir() and not force and path is None:
        try:
            return Dataset.load(out)
        except DataError:
            pass  # stale or broken copy: rebuild below
    if path is not None or name not in PRESETS:
        if path is None or not mapping:
            get_preset(name)  # raises the "unknown dataset" error that explains --format/--path
        from genrec.data.formats.generic import read_table

        raw, source = read_table(path, fmt=fmt, **mapping), str(path)
    else:
        raw, source = read_raw(name, Path(raw_dir) if raw_dir else None, download=download)
    if raw.info.get("partial"):
        warnings.warn(f"{name}: {raw.info['partial']}", stacklevel=2)
    ds = build_dataset(raw, name, filters, source=source)
    ds.save(out)
    return ds


def load_dataset(name_or_path: str | Path, filters: Filters = Filters()) -> Dataset:
    """A prepared dataset by directory or name; presets are prepared on first use."""
    p = Path(name_or_path).expanduser()
    if p.is_dir() and (p / "meta.json").is_file():
        return Dataset.load(p)
    name = str(name_or_path)
    if dataset_dir(name, filters).is_dir() or name in PRESETS:
        return prepare(name, filters=filters)
    raise DataError(
        f"no prepared dataset {name!r} (looked in {dataset_dir(name, filters)}); "
        f"run `genrec data prepare {name} --format csv --path FILE --user COL --item COL` "
        f"or use one of: {', '.join(PRESETS)}"
    )
