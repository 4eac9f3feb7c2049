"""The plots: a PNG that an image reader opens, and a clear error when there is nothing to draw."""

from __future__ import annotations

import pytest

from genrec.evaluation.plots import gate_chart, metrics_bar_chart, tradeoff_chart


def _png_size(path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_tradeoff_chart_writes_a_png(tmp_path):
    curves = {"id": [(0.031, 0.018, "0"), (0.030, 0.025, "0.2")],
              "gated": [(0.032, 0.016, "0"), (0.031, 0.027, "0.2"), (0.028, 0.040, "0.4")]}
    out = tradeoff_chart(curves, tmp_path / "sub" / "curve.png", "overall N@10", "tail R@10")
    assert out == tmp_path / "sub" / "curve.png"
    width, height = _png_size(out)
    assert width > 300 and height > 200


def test_tradeoff_chart_refuses_empty_curves(tmp_path):
    with pytest.raises(ValueError, match="no points"):
        tradeoff_chart({"id": []}, tmp_path / "x.png", "x", "y")
    assert not (tmp_path / "x.png").exists()


def test_metrics_bar_chart_writes_a_png(tmp_path):
    out = metrics_bar_chart({"ease": {"NDCG@10": 0.04}, "pop": {"NDCG@10": 0.01}}, ["NDCG@10"],
                            tmp_path / "bars.png")
    assert _png_size(out)[0] > 100


def test_tradeoff_chart_keeps_a_models_colour_when_an_earlier_one_has_no_points(tmp_path,
                                                                                monkeypatch):
    import matplotlib.axes

    colours = {}
    plot = matplotlib.axes.Axes.plot

    def spy(self, *args, **kw):
        colours[kw.get("label")] = kw.get("color")
        return plot(self, *args, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", spy)
    tradeoff_chart({"id": [(0.1, 0.2, "0")], "content": [], "gated": [(0.1, 0.3, "0")]},
                   tmp_path / "c.png", "x", "y")
    assert colours == {"id": "C0", "gated": "C2"}  # content has no line and keeps C1 free


def test_gate_chart_draws_the_per_position_entries_only(tmp_path):
    metrics = {"gate/behaviour": 0.7, "gate/content": 0.3, "session/NDCG@5": 0.2,
               "gate/behaviour@1": 0.9, "gate/content@1": 0.1,
               "gate/behaviour@2": 0.5, "gate/content@2": 0.5}
    out = gate_chart(metrics, tmp_path / "gate.png")
    width, height = _png_size(out)
    assert width > 150 and height > 200
    # no per-position entries (a model without experts): nothing drawn, no file
    assert gate_chart({"gate/behaviour": 1.0, "NDCG@10": 0.3}, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
