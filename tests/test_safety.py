"""Library-level safety rules: genrec replaces only what it made, and runs know their data."""

from __future__ import annotations

import os
import shutil
import stat

import pytest

from genrec._files import UnsafePathError, atomic_dir, atomic_file, check_replaceable, safe_name
from genrec.config import ConfigError
from genrec.data.dataset import DataError
from genrec.data.prepare import load_dataset, prepare
from genrec.runs import load_run, make_config, train

MAPPING = {"user": "user_id", "item": "item_id", "time": "ts"}


def _log(path, n_users=30, shift=0):
    rows = ["user_id,item_id,ts"]
    for u in range(n_users):
        rows += [f"u{u},i{(u * 3 + t + shift) % 25},{100 * u + t}" for t in range(6)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_atomic_dir_refuses_what_genrec_did_not_make(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(UnsafePathError, match="not a genrec run"):
        with atomic_dir(mine, marker="run.json", what="run"):
            pass
    assert (mine / "notes.txt").read_text() == "keep"
    (tmp_path / "file").write_text("keep")
    with pytest.raises(UnsafePathError, match="not a folder"):
        check_replaceable(tmp_path / "file", "run.json", "run")
    (tmp_path / "link").symlink_to(mine)
    with pytest.raises(UnsafePathError, match="not a folder"):
        check_replaceable(tmp_path / "link", "run.json", "run")
    # new, empty and genrec's own folders are fine, and replaced whole
    check_replaceable(tmp_path / "new", "run.json", "run")
    (tmp_path / "empty").mkdir()
    with atomic_dir(tmp_path / "empty", marker="run.json", what="run") as tmp:
        (tmp / "run.json").write_text("1")
    with atomic_dir(tmp_path / "empty", marker="run.json", what="run") as tmp:
        (tmp / "run.json").write_text("2")
    assert (tmp_path / "empty" / "run.json").read_text() == "2"


def test_atomic_file_keeps_the_old_file_on_error(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file(path) as fh:
            fh.write("half")
            raise RuntimeError("boom")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    with atomic_file(path) as fh:
        fh.write("new")
    assert path.read_text() == "new"


def test_atomic_file_gets_the_permissions_open_gives(tmp_path):
    umask = os.umask(0o022)  # a known umask for the check; restored below
    try:
        with atomic_file(tmp_path / "b.bin", "wb") as fh:
            fh.write(b"x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "b.bin").stat().st_mode) == 0o644  # not mkstemp's 0o600


@pytest.mark.parametrize("name", ["../x", "a/b", "a b", "..", ".hidden", ""])
def test_unsafe_names(name):
    with pytest.raises(UnsafePathError):
        safe_name(name)


def test_safe_names():
    assert safe_name("shop@u5i5") == "shop@u5i5" and safe_name("ml-100k") == "ml-100k"


def test_prepare_keeps_derived_files_when_the_data_is_the_same(tmp_path):
    log = _log(tmp_path / "log.csv")
    ds = prepare("shop", path=log, mapping=MAPPING)
    (ds.path / "item_vectors").mkdir()
    (ds.path / "item_vectors" / "x.parquet").write_text("vectors")
    again = prepare("shop", path=log, mapping=MAPPING)
    assert again.content_hash == ds.content_hash
    assert (ds.path / "item_vectors" / "x.parquet").is_file()
    other = _log(tmp_path / "other.csv", shift=1)
    with pytest.raises(DataError, match="already prepared from"):
        prepare("shop", path=other, mapping=MAPPING)
    assert load_dataset("shop").content_hash == ds.content_hash
    with pytest.raises(DataError, match="is a preset"):
        prepare("ml-100k", path=log, mapping=MAPPING)


def test_filtered_dataset_is_found_by_its_plain_name(tmp_path):
    from genrec.data.ingest import Filters

    prepare("shop", path=_log(tmp_path / "log.csv"), mapping=MAPPING, filters=Filters(3, 3))
    assert load_dataset("shop").path.name == "shop@u3i3"


def test_run_refuses_foreign_out_and_other_models(tmp_path):
    prepare("shop", path=_log(tmp_path / "log.csv"), mapping=MAPPING)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    cfg = make_config("popularity", ["data.name=shop"])
    with pytest.raises(UnsafePathError):
        train(cfg, mine)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    train(cfg, tmp_path / "run")
    with pytest.raises(ConfigError, match="--force"):
        train(make_config("itemcf", ["data.name=shop"]), tmp_path / "run")
    train(make_config("itemcf", ["data.name=shop"]), tmp_path / "run", force=True)
    assert load_run(tmp_path / "run").config.model == "itemcf"


def test_run_copied_to_another_home_finds_its_dataset_and_refuses_changed_data(
        tmp_path, monkeypatch):
    log = _log(tmp_path / "log.csv")
    prepare("shop", path=log, mapping=MAPPING)
    run = train(make_config("ease", ["data.name=shop", "params.l2=10"]), tmp_path / "run")
    # another machine: the same data prepared under another GENREC_HOME, the run dir copied
    monkeypatch.setenv("GENREC_HOME", str(tmp_path / "home2"))
    shutil.copytree(tmp_path / "run", tmp_path / "copied")
    shutil.rmtree(run.dataset.path)
    prepare("shop", path=log, mapping=MAPPING)
    assert load_run(tmp_path / "copied").dataset.content_hash == run.dataset.content_hash
    prepare("shop", path=_log(tmp_path / "other.csv", shift=2), mapping=MAPPING, force=True)
    with pytest.raises(DataError, match="now holds other data"):
        load_run(tmp_path / "copied")
