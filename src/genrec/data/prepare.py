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

import polars as pl

from genrec._files import safe_name
from genrec.data.dataset import DataError, Dataset, read_meta
from genrec.data.formats import RawData
from genrec.data.ingest import Filters, build_dataset
from genrec.data.presets import PRESETS, get_preset
from genrec.data.sources import genrec_home, resolve_raw_dir

__all__ = ["prepare", "load_dataset", "dataset_dir", "read_raw", "prepared_datasets"]


def dataset_dir(name: str, filters: Filters = Filters()) -> Path:
    """Where dataset ``name`` prepared with ``filters`` lives; the name must be a safe file name."""
    return genrec_home() / "datasets" / f"{safe_name(name, 'dataset name')}{filters.suffix()}"


def check_filters(filters: Filters) -> None:
    if filters.min_user < 0 or filters.min_item < 0:
        raise DataError(f"k-core thresholds must be >= 0, got min_user={filters.min_user}, "
                        f"min_item={filters.min_item}; use 0 to keep every user and item")


def prepared_datasets() -> list[str]:
    """Names of every dataset prepared under $GENREC_HOME (filtered copies as ``shop@u5i5``)."""
    root = genrec_home() / "datasets"
    return sorted(p.name for p in root.iterdir() if (p / "meta.json").is_file()) \
        if root.is_dir() else []


def prepared_variants(name: str) -> list[str]:
    """Names of the prepared copies of ``name`` under other filters (``shop@u5i5`` ...)."""
    return [p for p in prepared_datasets() if p.startswith(f"{name}@")]


def _read_error(path: Path, e: Exception) -> DataError:
    """A one-line DataError naming what is wrong with the file ``path`` and the fix."""
    first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, UnicodeDecodeError):
        return DataError(f"{path} is not UTF-8 text (byte {e.object[e.start:e.start + 1]!r} at "
                         f"position {e.start}); re-save it as UTF-8, e.g. `iconv -f latin1 -t "
                         f"utf-8 {path.name} > {path.stem}.utf8{path.suffix}`")
    if isinstance(e, pl.exceptions.NoDataError):
        return DataError(f"{path} is empty; give a file with a header row and one interaction "
                         f"per line")
    if "more fields" in first or "ragged" in first:
        return DataError(f"{path} has a row with more fields than its header ({first[:120]}); "
                         f"fix or drop the ragged rows, or quote fields that contain the separator")
    if "PAR1" in first or "parquet" in first.lower():
        return DataError(f"{path} is not a Parquet file ({first[:120]}); pass --format with the "
                         f"file's real format (csv, tsv, jsonl, parquet)")
    return DataError(f"cannot read {path}: {first[:200]}; check the file and --format")


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

    A prepared preset is reused unless ``force``; an explicit ``path`` is always re-read, and
    replaces a prepared copy only when that copy came from the same file (or with ``force``):
    a preset is never replaced by another file without ``force``. Re-reading identical data
    keeps the prepared copy (and its item vectors, semantic IDs and report) as it is.
    """
    out = dataset_dir(name, filters)
    check_filters(filters)
    if path is not None and filters.rating_threshold is not None and not (mapping or {}).get("rating"):
        raise DataError(f"--rating-threshold {filters.rating_threshold:g} needs a rating column: "
                        f"name it with --rating COL")
    if path is not None and not force:
        _check_same_source(name, out, Path(path))
    if out.is_dir() and not force and path is None:
        try:
            return Dataset.load(out)
        except DataError:
            pass  # stale or broken copy: rebuild below
    if path is not None or name not in PRESETS:
        if path is None or not mapping:
            get_preset(name)  # raises the "unknown dataset" error that explains --format/--path
        from genrec.data.formats.generic import read_table

        if mapping.get("user") == mapping.get("item"):
            raise DataError(f"--user and --item both name column {mapping['user']!r}; map the "
                            f"user and the item to two different columns")
        try:
            raw = read_table(path, fmt=fmt, **mapping)
            ds = build_dataset(raw, name, filters, source=str(Path(path).expanduser().resolve()))
        except (pl.exceptions.PolarsError, UnicodeDecodeError) as e:
            raise _read_error(Path(path), e) from None
    else:
        raw, source = read_raw(name, Path(raw_dir) if raw_dir else None, download=download)
        ds = build_dataset(raw, name, filters, source=source)
    if raw.info.get("partial"):
        warnings.warn(f"{name}: {raw.info['partial']}", stacklevel=2)
    if path is not None and (out / "meta.json").is_file():
        try:  # same data: keep the prepared copy with its vectors, IDs and report
            old = read_meta(out).get("content_hash") or Dataset.load(out).content_hash
            if old == ds.content_hash:
                return Dataset.load(out)
        except DataError:
            pass  # broken copy: replaced below
    ds.save(out)
    return ds


def _check_same_source(name: str, out: Path, path: Path) -> None:
    """Refuse to replace a preset, or a dataset prepared from another file, with ``path``."""
    if name in PRESETS:
        raise DataError(f"{name!r} is a preset: preparing it from {path} would replace the "
                        f"prepared preset (and every run made on it); give your file its own name "
                        f"(e.g. `genrec data prepare my-{name} --path {path} ...`) or pass --force")
    if not (out / "meta.json").is_file():
        return
    try:
        source = str(read_meta(out).get("source", ""))
    except DataError:
        return  # a broken copy holds nothing worth keeping
    if source and Path(source).expanduser().resolve() != path.expanduser().resolve():
        raise DataError(f"dataset {name!r} is already prepared from {source}; preparing it from "
                        f"{path} would replace it: choose another name or pass --force")


def load_dataset(name_or_path: str | Path, filters: Filters = Filters()) -> Dataset:
    """A prepared dataset by directory or name; presets are prepared on first use."""
    p = Path(name_or_path).expanduser()
    if p.is_dir() and (p / "meta.json").is_file():
        return Dataset.load(p)
    name = str(name_or_path)
    if "/" in name or name.startswith((".", "~")):
        raise DataError(f"{name} is not a prepared dataset folder (no meta.json there); pass a "
                        f"dataset name (genrec data list) or a folder that `genrec data prepare` "
                        f"wrote")
    check_filters(filters)
    if dataset_dir(name, filters).is_dir() or name in PRESETS:
        return prepare(name, filters=filters)
    variants = prepared_variants(name)
    if len(variants) == 1 and filters == Filters():  # `prepare shop --min-user 5` -> shop@u5i5
        return Dataset.load(genrec_home() / "datasets" / variants[0])
    if variants:
        raise DataError(f"dataset {name!r} is prepared only with filters, as "
                        f"{', '.join(variants)}; pass one of those names (e.g. --data "
                        f"{variants[0]})")
    raise DataError(
        f"no prepared dataset {name!r} (looked in {dataset_dir(name, filters)}); "
        f"run `genrec data prepare {name} --format csv --path FILE --user COL --item COL` "
        f"or use one of: {', '.join(PRESETS)}"
    )
