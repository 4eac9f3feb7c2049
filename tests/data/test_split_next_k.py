"""Protocol P6's ``next_k`` split: the last k items test, the k before them validation, users too
short for both (and one training item) stay in train only and are counted."""

import numpy as np
import polars as pl
import pytest

from genrec.data import DataError
from genrec.data.formats import RawData
from genrec.data.ingest import build_dataset
from genrec.data.splits import make_split


@pytest.fixture
def ds():
    rng = np.random.default_rng(0)
    rows = []
    for u in range(30):
        n = 1 + u % 15  # lengths 1..15: some users too short for k = 3 (fewer than 7 items)
        items = rng.choice(60, size=n, replace=False)
        rows += [(f"u{u:02d}", str(i), t * 10 + u) for t, i in enumerate(items)]
    u, i, t = zip(*rows)
    return build_dataset(RawData(pl.LazyFrame({"user_id": u, "item_id": i, "timestamp": t})), "toy")


def test_next_k_takes_the_last_k_as_test_and_the_k_before_as_valid(ds):
    k = 3
    s = make_split(ds, "next_k", k=k)
    seqs = ds.interactions.group_by("user_idx", maintain_order=True).agg("item_idx")
    short = 0
    for u, items in seqs.iter_rows():
        if len(items) >= 2 * k + 1:
            assert s.sessions("test")[u].tolist() == items[-k:]
            assert s.sessions("valid")[u].tolist() == items[-2 * k:-k]
            assert s.sequences("test")[u].tolist() == items[:-k]
            assert s.sequences("valid")[u].tolist() == items[:-2 * k]
        else:  # too short: everything stays in train, nothing evaluated
            short += 1
            assert s.sessions("test")[u].tolist() == [] and s.sessions("valid")[u].tolist() == []
            assert s.sequences("train")[u].tolist() == items
    assert short > 0 and s.excluded == short and s.summary()["excluded_users"] == short
    assert s.train.height + s.valid.height + s.test.height == ds.interactions.height


def test_next_k_rejects_a_non_positive_k(ds):
    with pytest.raises(DataError, match="k >= 1"):
        make_split(ds, "next_k", k=0)
