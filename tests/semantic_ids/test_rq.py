"""RQ-KMeans and RQ-VAE on synthetic clustered vectors; the dedup token, the report, the store."""

import json

import numpy as np
import pytest
import torch

from genrec.data.dataset import DataError
from genrec.features.store import save_vectors
from genrec.semantic_ids.codes import code_report, dedup
from genrec.semantic_ids.rq_kmeans import reconstruct, rq_kmeans
from genrec.semantic_ids.rq_vae import RQVAE, RQVAEConfig, train_rq_vae
from genrec.semantic_ids.store import build_semantic_ids, load_semantic_ids
from tests.features import tiny_dataset


def clustered(n_top: int = 8, n_sub: int = 4, per: int = 10, dim: int = 16, seed: int = 0):
    """Vectors around n_top far-apart centres, each split into n_sub nearer sub-centres; returns
    (vectors, top-cluster label)."""
    rng = np.random.default_rng(seed)
    top = rng.normal(size=(n_top, dim)) * 10
    sub = top[:, None] + rng.normal(size=(n_top, n_sub, dim)) * 2
    x = sub[:, :, None] + rng.normal(size=(n_top, n_sub, per, dim)) * 0.3
    labels = np.repeat(np.arange(n_top), n_sub * per)
    return x.reshape(-1, dim).astype(np.float32), labels


def test_dedup_numbers_each_group_in_item_order():
    codes = np.array([[1, 2], [0, 0], [1, 2], [1, 2], [0, 1]])
    assert dedup(codes).tolist() == [[1, 2, 0], [0, 0, 0], [1, 2, 1], [1, 2, 2], [0, 1, 0]]
    assert len(np.unique(dedup(codes), axis=0)) == 5


def test_code_report_by_hand():
    codes = np.array([[1, 2], [0, 0], [1, 2], [1, 2], [0, 1]])
    r = code_report(codes, [4, 3])
    assert [lv["used"] for lv in r["levels"]] == [2, 3]
    assert [lv["utilisation"] for lv in r["levels"]] == [0.5, 1.0]
    # level 0: p = (2/5, 3/5) -> exp(entropy) = 1.96
    assert r["levels"][0]["perplexity"] == pytest.approx(1.96, abs=0.01)
    assert r["distinct_ids"] == 3 and r["collision_rate"] == 0.6 and r["max_group"] == 3


def test_rq_kmeans_finds_the_clusters_and_error_falls_with_levels():
    x, labels = clustered()
    q = rq_kmeans(x, levels=3, codebook_size=8, seed=1, n_redo=2)
    assert q.codes.shape == (320, 3) and len(q.codebooks) == 3
    # level 1 recovers the 8 far-apart clusters exactly: one code per cluster, every code used
    assert all(len(set(q.codes[labels == c, 0])) == 1 for c in range(8))
    assert len(set(q.codes[:, 0])) == 8
    # a single start of plain k-means may split a cluster, but never a tight sub-cluster
    one = rq_kmeans(x, levels=1, codebook_size=8, seed=0).codes[:, 0].reshape(32, 10)
    assert (one == one[:, :1]).all()
    r = code_report(q.codes, [8, 8, 8])
    assert [lv["utilisation"] for lv in r["levels"]] == [1.0, 1.0, 1.0]
    err = q.relative_error
    assert err[0] > err[1] > err[2] and err[0] < 0.1  # the top clusters hold most of the variance
    recon = reconstruct(q.codes, q.codebooks)
    assert np.isclose(((x - recon) ** 2).sum() / (x ** 2).sum(), err[2], rtol=1e-3)
    full = dedup(q.codes)
    assert len(np.unique(full, axis=0)) == len(x)  # unique IDs after the dedup token
    assert full[:, 3].max() + 1 == r["max_group"]


def test_rq_kmeans_rejects_too_few_vectors():
    with pytest.raises(ValueError, match="codebook_size"):
        rq_kmeans(np.zeros((5, 3), dtype=np.float32), codebook_size=8)


def test_rq_vae_trains_lowers_error_and_uses_every_code():
    x, _ = clustered(n_top=4, n_sub=4, per=8, dim=12)
    cfg = RQVAEConfig(levels=2, codebook_size=8, hidden=(32,), latent=6, epochs=40,
                      batch_size=64, lr=3e-3, seed=0)
    res = train_rq_vae(x, cfg)
    assert res.codes.shape == (128, 2)
    assert res.relative_error < 0.5 * res.initial_error
    assert res.dead_codes == [0, 0]
    assert len(res.history) == 40 and res.history[-1]["loss"] < res.history[0]["loss"]


def test_dead_code_reset_revives_unused_codes():
    x, _ = clustered(n_top=4, n_sub=2, per=8, dim=12)
    torch.manual_seed(0)
    model = RQVAE(12, RQVAEConfig(levels=2, codebook_size=8, hidden=(16,), latent=4))
    xt = torch.from_numpy(x)
    with torch.no_grad():
        model.codebooks[:, 3:] = 1e6  # five codes per level far from every latent: dead
        _, before, _ = model(xt)
    assert all(len(before[:, d].unique()) <= 3 for d in range(2))
    reset = model.reset_dead_codes(xt, torch.Generator().manual_seed(0))
    assert reset[0] >= 5  # the five pushed away, and any other code no latent was nearest to
    with torch.no_grad():
        _, after, _ = model(xt)
    assert [len(after[:, d].unique()) for d in range(2)] == [8, 8]


def test_store_roundtrip_and_missing_ids_name_the_command(tmp_path):
    x, _ = clustered(n_top=4, n_sub=2, per=4, dim=8)  # 32 items
    ids = [f"i{j}" for j in range(len(x))]
    ds = tiny_dataset(tmp_path / "ds", {"item_id": ids, "title": ids})
    with pytest.raises(DataError, match="genrec semantic-ids build .*--vectors vec --method rq_kmeans"):
        load_semantic_ids(ds, "vec-rq_kmeans")
    with pytest.raises(DataError, match="set params.semantic_ids"):
        load_semantic_ids(ds, "")
    save_vectors(ds, "vec", ids[::-1], x[::-1], {})  # stored out of item order
    path, report = build_semantic_ids(ds, "vec", "rq_kmeans", levels=2, codebook_size=4)
    assert path == ds.path / "semantic_ids" / "vec-rq_kmeans.parquet"
    saved = json.loads(path.with_suffix(".json").read_text())
    assert saved == report and report["sizes"][:2] == [4, 4] and report["n_items"] == 32
    codes, sizes, meta = load_semantic_ids(ds, "vec-rq_kmeans")
    assert codes.shape == (33, 3) and (codes[0] == -1).all() and sizes == report["sizes"]
    expected = dedup(rq_kmeans(x, 2, 4, seed=0).codes)
    np.testing.assert_array_equal(codes[1:], expected)  # aligned to item_idx by raw id
    assert meta["method"] == "rq_kmeans" and meta["vectors"] == "vec"


def test_cli_build_writes_the_files_and_reports(tmp_path):
    from typer.testing import CliRunner

    from genrec.cli.semantic_ids import app

    x, _ = clustered(n_top=4, n_sub=2, per=4, dim=8)
    ids = [f"i{j}" for j in range(len(x))]
    ds = tiny_dataset(tmp_path / "ds", {"item_id": ids, "title": ids})
    args = ["--data", str(ds.path), "--vectors", "vec", "--levels", "2", "--codebook-size", "4"]
    missing = CliRunner().invoke(app, args)
    assert isinstance(missing.exception, DataError) and "genrec embed items" in str(missing.exception)
    save_vectors(ds, "vec", ids, x, {})
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "collision rate" in result.output and "100% / 100%" in result.output
    assert (ds.path / "semantic_ids" / "vec-rq_kmeans.json").is_file()
