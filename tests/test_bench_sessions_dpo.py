"""The pure parts of benchmarks/bench_sessions_dpo.py on hand-made inputs: MMR re-ranking of a
candidate list, the per-user P6 values (their means are session_metrics'), the relative change
against SFT, the MMR curve test and the verdict."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genrec.evaluation.session import session_metrics

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import bench_sessions_dpo

    return bench_sessions_dpo


# items 1, 2 point the same way, 3 is orthogonal to them, 4 has no vector (cosine 0 to all)
UNIT = np.array([[0, 0], [1, 0], [1, 0], [0, 1], [0, 0]], dtype=np.float64)


def test_mmr_keeps_the_order_at_lambda_1_and_skips_a_near_duplicate_below(bench):
    cands = np.array([1, 2, 3, 4, -1])
    np.testing.assert_array_equal(bench.mmr(cands, UNIT, 1.0, 3), [1, 2, 3])
    # lambda .5, rel = 1, 2/3, 1/3, 0: after 1, item 2 scores .5 * 2/3 - .5 * 1 < 0 < item 3's 1/6
    np.testing.assert_array_equal(bench.mmr(cands, UNIT, 0.5, 3), [1, 3, 4])
    np.testing.assert_array_equal(bench.mmr(np.array([2, -1]), UNIT, 0.5, 3), [2, -1, -1])


def test_per_user_values_average_to_the_session_metrics(bench):
    lists = np.array([[3, 1, 2, -1], [4, 3, 2, 1]])
    sessions = np.array([[1, 2], [2, 0]])
    counts, n_users = np.array([0, 4, 2, 1, 1], dtype=np.float32), 4
    values = bench.per_user(lists, sessions, counts, n_users, UNIT)
    assert values["Recall@20"].tolist() == [1.0, 1.0]
    # user 1: the only item (grade 1) at position 3 -> (1 / log2 4) / 1
    assert values["NDCG@5"][1] == pytest.approx(0.5)
    # user 0: pairs (3,1) (3,2) distance 1, (1,2) distance 0
    assert values["ILD@10"][0] == pytest.approx(2 / 3)
    assert values["novelty@10"][0] == pytest.approx(np.mean([2.0, 0.0, 1.0]))
    means = session_metrics(lists, sessions, counts, n_users, UNIT)
    for name, v in values.items():
        assert v.mean() == pytest.approx(means[name]), name


def test_relative_change_and_its_interval_skip_undefined_users(bench):
    base = {m: np.array([1.0, 2.0, 3.0, np.nan]) for m in bench.CHANGED}
    same = bench.relative(base, base, seed=0)
    assert all(v == (0.0, 0.0, 0.0) for v in same.values())
    more = bench.relative({m: np.array([1.2, 2.4, 3.6, 5.0]) for m in bench.CHANGED}, base, 0)
    change, lo, hi = more["ILD@10"]
    assert change == pytest.approx(0.2) and lo <= change <= hi


def test_the_mmr_curve_front_and_the_verdict(bench):
    curve = [(0.2, 0.10), (0.4, 0.08), (0.3, 0.05)]  # (0.3, 0.05) is dominated: off the front
    xs, ys = bench.mmr_front(curve)
    assert xs.tolist() == [0.2, 0.4] and ys.tolist() == [0.10, 0.08]
    assert bench.above_curve(0.3, 0.095, curve)        # the front is at 0.09 there
    assert not bench.above_curve(0.3, 0.085, curve)
    assert not bench.above_curve(0.5, 0.07, curve)     # beyond the end: its end value, 0.08
    good = {"NDCG@5": (-0.02, -0.05, 0.01), "ILD@10": (0.12, 0.1, 0.14),
            "novelty@10": (0.11, 0.09, 0.13)}
    assert bench.verdict(good, True) == "meets the targets"
    bad = {**good, "NDCG@5": (-0.04, -0.06, -0.02)}
    assert bench.verdict(bad, False) == "misses: NDCG@5 -4.0% < -3%; below the MMR curve"
    assert bench.verdict(good, None) == "meets the targets"  # MMR rows: no curve test
