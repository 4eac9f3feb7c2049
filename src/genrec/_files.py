"""Writing a directory atomically: readers see the old directory or the complete new one.

    >>> with atomic_dir(Path("runs/x")) as tmp:      # doctest: +SKIP
    ...     (tmp / "model.pt").write_bytes(data)     # fill the temporary sibling
    # on success runs/x is replaced; on any error the temporary is deleted, runs/x left as it was
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

__all__ = ["atomic_dir"]


@contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to fill; rename it into place when the block ends."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    tmp.chmod(0o755)  # mkdtemp makes it owner-only
    try:
        yield tmp
        old = None
        if path.exists():  # moved aside, not deleted, until the new one is in place
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # only left on an error
