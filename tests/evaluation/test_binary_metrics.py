"""AUC, GAUC and logloss of candidate rows (``genrec.evaluation.binary``): hand-computed edge
cases and a brute-force pair count on random data (STYLE #13, #14)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from genrec.evaluation.binary import auc, binary_metrics, gauc, group_auc, logloss


def pairwise_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """The definition: over every (positive, negative) pair, 1 if the positive scores higher,
    1/2 on a tie."""
    pos, neg = scores[labels > 0.5], scores[labels <= 0.5]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0) + 0.5 * (diff == 0)).mean())


def test_hand_computed_cases():
    assert auc(np.array([0.9, 0.2, 0.4]), np.array([1, 0, 0])) == 1.0
    assert auc(np.array([0.1, 0.2, 0.4]), np.array([1, 0, 0])) == 0.0
    assert auc(np.array([0.5, 0.5, 0.5, 0.5]), np.array([1, 0, 1, 0])) == 0.5  # ties: one half
    assert auc(np.array([0.3, 0.8, 0.5]), np.array([1, 1, 0])) == 0.5  # one of two pairs won
    assert math.isnan(auc(np.array([0.3, 0.8]), np.array([1, 1])))  # no negative
    assert math.isnan(auc(np.array([]), np.array([])))


def test_gauc_is_the_mean_over_groups_with_both_labels():
    scores = np.array([0.9, 0.2, 0.1, 0.3, 0.7, 0.6])
    labels = np.array([1, 0, 1, 0, 1, 1])
    groups = np.array([5, 5, 9, 9, 2, 2])  # group 2 has no negative: left out
    np.testing.assert_array_equal(group_auc(scores, labels, groups), [np.nan, 1.0, 0.0])
    assert gauc(scores, labels, groups) == 0.5
    assert math.isnan(gauc(scores[4:], labels[4:], groups[4:]))


def test_auc_and_gauc_agree_with_the_pair_count_on_random_data():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, 400) / 5  # many ties
    labels = rng.random(400) < 0.3
    groups = rng.integers(0, 12, 400)
    assert auc(scores, labels) == pytest.approx(pairwise_auc(scores, labels))
    expected = [pairwise_auc(scores[groups == g], labels[groups == g]) for g in range(12)]
    assert gauc(scores, labels, groups) == pytest.approx(np.mean(expected))


def test_logloss_and_the_per_task_report():
    assert logloss(np.array([0.5, 0.5]), np.array([1, 0])) == pytest.approx(math.log(2))
    assert logloss(np.array([1.0]), np.array([0.0])) == pytest.approx(-math.log(1e-7))  # clipped
    probs = np.array([[0.9, 0.2], [0.1, 0.7], [0.8, 0.6], [0.3, 0.1]])
    labels = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    out = binary_metrics(probs, labels, np.array([0, 0, 1, 1]))
    assert out["AUC_t0"] == out["AUC_t1"] == out["GAUC_t0"] == out["GAUC"] == 1.0
    assert out["neg_logloss"] == -out["logloss"]
    assert out["logloss"] == pytest.approx((out["logloss_t0"] + out["logloss_t1"]) / 2)
    assert set(binary_metrics(probs[:, :1], labels[:, :1], np.zeros(4))) == {
        "GAUC", "AUC", "logloss", "neg_logloss"}
