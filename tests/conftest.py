"""Shared fixtures. Real datasets live in ../shared/data (or $GENREC_DATA); with
GENREC_REQUIRE_DATA=1 (CI) a missing dataset fails the test instead of skipping it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


# read once at start-up: tests that unset GENREC_DATA for themselves must not move the real data
_DATA_ROOT = Path(os.environ["GENREC_DATA"]) if os.environ.get("GENREC_DATA") else REPO.parent / "shared" / "data"


def shared_data_root() -> Path:
    return _DATA_ROOT


@pytest.fixture
def shared_data():
    """shared_data("ml-100k") -> Path of that raw folder, or skip/fail when it is absent."""

    def get(name: str) -> Path:
        path = shared_data_root() / name
        if not path.is_dir():
            msg = f"real dataset folder {path} is missing"
            if os.environ.get("GENREC_REQUIRE_DATA") == "1":
                pytest.fail(msg + " (GENREC_REQUIRE_DATA=1)")
            pytest.skip(msg)
        return path

    return get


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Every test on one torch thread: tiny ops on CI's 2 shared cores only wait on each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Never let a test write to the user's ~/.genrec."""
    monkeypatch.setenv("GENREC_HOME", str(tmp_path_factory.mktemp("genrec_home")))
