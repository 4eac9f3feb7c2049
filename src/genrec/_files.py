"""Writing files and directories safely: atomically, and never over something genrec did not make.

Every writer of a run, dataset, report or search directory goes through ``atomic_dir``, which
refuses to replace what is at the path unless genrec made it: a directory holding the writer's
marker file (``run.json`` for a run, ``meta.json`` for a dataset, ...). A plain file, a device
node, a symlink or a folder of the user's own is never touched; the error names the path and the
fix. Readers see the old directory or the complete new one, never a half-written one.

    >>> with atomic_dir(Path("runs/x"), marker="run.json", what="run") as tmp:   # doctest: +SKIP
    ...     (tmp / "run.json").write_text("{}")          # fill the temporary sibling
    # on success runs/x is replaced; on any error the temporary is deleted, runs/x left as it was

Names that become paths (dataset names, encoder names) pass ``safe_name`` first.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_dir", "atomic_file", "check_replaceable", "safe_name", "UnsafePathError"]

_SAFE = re.compile(r"[A-Za-z0-9._@-]+")


class UnsafePathError(ValueError):
    """Writing here would replace something genrec did not make, or a name is not a safe path."""


def safe_name(name: str, what: str = "name") -> str:
    """``name`` unchanged when it is a safe single path component, else UnsafePathError."""
    if not _SAFE.fullmatch(name or "") or ".." in name or name.startswith("."):
        raise UnsafePathError(f"{what} {name!r} is not a safe name: use letters, digits and . _ @ - "
                              f"only (no '/', spaces or '..', not starting with '.')")
    return name


def check_replaceable(path: str | Path, marker: str | tuple[str, ...], what: str) -> None:
    """Refuse ``path`` unless it is absent, an empty folder, or a folder genrec made (it holds
    one of the ``marker`` files). Raises UnsafePathError naming the path and the fix."""
    path = Path(path).expanduser()
    markers = (marker,) if isinstance(marker, str) else tuple(marker)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise UnsafePathError(f"{path} exists and is not a folder (a file, link or device); genrec "
                              f"replaces only a {what} folder it made: pass a new path")
    if path.is_dir() and any(path.iterdir()) and not any((path / m).is_file() for m in markers):
        raise UnsafePathError(f"{path} exists and is not a genrec {what} (no "
                              f"{' or '.join(markers)}); pass a new or empty folder so nothing of "
                              f"yours is replaced")


@contextmanager
def atomic_dir(path: str | Path, marker: str | tuple[str, ...], what: str) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to fill; rename it into place when the block ends.

    ``path`` must pass ``check_replaceable(path, marker, what)``, checked before and again just
    before the rename."""
    path = Path(path).expanduser()
    check_replaceable(path, marker, what)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as e:
        raise UnsafePathError(f"cannot write the {what} to {path}: {e.strerror or e}; pass --out "
                              f"a folder you can write to") from None
    tmp.chmod(0o755)  # mkdtemp makes it owner-only
    try:
        yield tmp
        check_replaceable(path, marker, what)  # still ours after the (possibly long) work
        old = None
        if path.exists():  # moved aside, not deleted, until the new one is in place
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # only left on an error


@contextmanager
def atomic_file(path: str | Path, mode: str = "w", **open_kw) -> Iterator:
    """Open a temporary sibling of ``path`` for writing; rename it over ``path`` on success.

    Readers see the old file or the complete new one; on an error the temporary is removed.
    The file gets the permissions ``open`` would give it (0o666 less the umask), not
    mkstemp's owner-only 0o600. Each call has its own temporary, so several processes may
    write the same path at once: the last rename wins, and no reader sees a mix."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_file():
        raise UnsafePathError(f"{path} exists and is not a regular file; pass another path")
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}"
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:  # another writer drew the same name: draw again
            continue
    try:
        with os.fdopen(fd, mode, **open_kw) as fh:
            yield fh
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # only left on an error
