"""One conformance suite for every model of ``genrec.registry.MODELS`` (STYLE #12).

Each registered model is trained briefly (tiny sizes, few epochs, one thread) through
``genrec.runs.train`` on a planted dataset prepared from a CSV by ``genrec.data.prepare``: 120
users in two taste groups (even users only touch items i01..i20, odd users i21..i40). Then:

- it beats popularity's test NDCG@10 there (it learned the groups);
- scores have shape (B, n_items + 1) with PAD at -inf;
- save -> load gives identical scores;
- an explicit item history is served through the FastAPI app (POST /recommend);
- an unknown config key fails with ConfigError, a damaged run directory with a clear DataError.

A newly registered model is tested here without anyone writing a test: its config's size
fields are shrunk by name when it declares them (``SMALL``), and a model that declares
``semantic_ids`` gets the IDs built in the fixture by genrec's RQ-KMeans builder. Rankers over
candidate lists (``kind = "features"``) are not trained on an interaction log: their own
conformance suite is ``test_rankers.py``.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from genrec.config import ConfigError
from genrec.data.dataset import DataError
from genrec.registry import MODELS, model_classes
from genrec.runs import check_run_dir, load_run, make_config, scorer, train

N_USERS, N_ITEMS, PER_USER = 120, 40, 10
REFERENCE = "popularity"
IDS = "planted-rq_kmeans"  # semantic IDs built in the fixture
# config fields shrunk when a model declares them: small and fast on one core
SMALL = {"dim": 16, "ff_dim": 32, "head_dim": 8, "n_layers": 1, "n_decoder_layers": 1,
         "max_len": 10, "beam_size": 10, "user_buckets": 16, "dropout": 0.0,
         "n_negatives": 32, "k": 8}  # k: gfcf's singular vectors (< 40 items), itemcf's neighbours
TRAIN = ["train.epochs=6", "train.batch_size=32", "train.lr=0.01", "train.threads=1",
         "train.patience=6"]


def item(i: int) -> str:
    return f"i{i:02d}"


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    """The planted dataset's directory, prepared under its own GENREC_HOME, with semantic IDs."""
    from genrec.data.prepare import prepare
    from genrec.features.store import save_vectors
    from genrec.semantic_ids.store import build_semantic_ids

    root = tmp_path_factory.mktemp("conformance")
    rng = np.random.default_rng(0)
    lines = ["user,item,time"]
    for u in range(N_USERS):
        group = range(1, 21) if u % 2 == 0 else range(21, 41)
        for t, i in enumerate(rng.choice(list(group), size=PER_USER, replace=False)):
            lines.append(f"u{u:03d},{item(int(i))},{1000 * u + t}")
    (root / "log.csv").write_text("\n".join(lines) + "\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GENREC_HOME", str(root / "home"))
        ds = prepare("planted", path=root / "log.csv",
                     mapping={"user": "user", "item": "item", "time": "time"})
    # item vectors: the group as one direction plus noise, quantised to 2 levels x 4 codes
    ids = [str(i) for i in ds.item_ids[1:]]
    vectors = rng.normal(scale=0.3, size=(len(ids), 6))
    vectors[:, 0] += [1.0 if int(i[1:]) <= 20 else -1.0 for i in ids]
    save_vectors(ds, "planted", ids, vectors, {"source": "test_conformance"})
    build_semantic_ids(ds, "planted", "rq_kmeans", levels=2, codebook_size=4)
    return Path(ds.path)


def settings(name: str, data: Path) -> list[str]:
    """``--set`` overrides that train ``name`` small and fast on ``data``."""
    fields = {f.name for f in dataclasses.fields(model_classes(name)[1])}
    sets = [f"data.name={data}", "eval.ks=[5,10]", *TRAIN]
    sets += [f"params.{k}={v}" for k, v in SMALL.items() if k in fields]
    sets += [f"params.semantic_ids={IDS}"] if "semantic_ids" in fields else []
    return sets


@pytest.fixture(scope="module")
def trained(planted, tmp_path_factory):
    """name -> (Run, run directory), each model trained once for the whole module."""
    cache: dict[str, tuple] = {}
    root = tmp_path_factory.mktemp("runs")

    def get(name: str):
        if name not in cache:
            torch.set_num_threads(1)
            out = root / name
            cache[name] = (train(make_config(name, settings(name, planted)), out), out)
        return cache[name]

    return get


def test_the_planted_pattern_beats_popularity(trained, name):
    if name == REFERENCE:
        pytest.skip("popularity is the reference every other model must beat")
    run, _ = trained(name)
    ndcg = run.info["metrics"]["test"]["NDCG@10"]
    reference = trained(REFERENCE)[0].info["metrics"]["test"]["NDCG@10"]
    assert ndcg > reference, f"{name} NDCG@10 {ndcg:.4f} <= popularity {reference:.4f}"


def test_scores_cover_the_catalogue_with_pad_never_recommended(trained, name):
    run, _ = trained(name)
    scores = torch.as_tensor(scorer(run, "test")(np.arange(7))).cpu()
    assert tuple(scores.shape) == (7, N_ITEMS + 1)
    assert (scores[:, 0] == -np.inf).all() and not scores.isnan().any()


def test_save_then_load_gives_identical_scores(trained, name):
    run, out = trained(name)
    users = np.arange(N_USERS)
    before = torch.as_tensor(scorer(run, "test")(users)).cpu().numpy()
    after = torch.as_tensor(scorer(load_run(out), "test")(users)).cpu().numpy()
    np.testing.assert_array_equal(after, before)


def test_an_explicit_history_is_served_over_http(trained, name):
    from genrec.serving.app import create_app
    from genrec.serving.bundle import load_bundle

    _, out = trained(name)
    bundle = load_bundle(out, search="tfidf")
    history = [item(i) for i in (2, 4, 6, 8)]
    with TestClient(create_app(bundle=bundle)) as client:
        r = client.post("/recommend", json={"history": history, "k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    got = [it["item_id"] for it in body["items"]]
    assert body["model"] == name and body["fallback"] is None
    assert len(got) == 5 and not set(got) & set(history)
    direct = bundle.recommend(history=bundle.item_index(history), k=5)  # the same recommend
    assert got == [str(bundle.item_ids[i]) for i in direct.items]


def test_an_unknown_config_key_is_a_config_error(planted, name, tmp_path):
    with pytest.raises(ConfigError, match=f"unknown key.*params.no_such_field for "
                                          f"{model_classes(name)[1].__name__}"):
        make_config(name, [*settings(name, planted), "params.no_such_field=1"])
    cfg = make_config(name, settings(name, planted))
    cfg.params["no_such_field"] = 1  # a config built in code is checked by train too
    with pytest.raises(ConfigError, match="no_such_field"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run" / "run.json").exists()


def test_a_damaged_run_directory_is_a_clear_data_error(trained, name, tmp_path):
    _, out = trained(name)
    weights = next(p.name for p in out.iterdir() if p.name in ("model.pt", "model.npz"))
    broken = shutil.copytree(out, tmp_path / "broken")
    (broken / weights).write_bytes(b"not weights")
    with pytest.raises(DataError, match=f"does not hold {name} weights"):
        load_run(broken)
    (broken / weights).unlink()
    for check in (load_run, check_run_dir):
        with pytest.raises(DataError, match=f"not a genrec run directory .*missing {weights[:5]}"):
            check(broken)


def pytest_generate_tests(metafunc):
    if "name" in metafunc.fixturenames:
        metafunc.parametrize("name", [n for n in MODELS if model_classes(n)[0].kind != "features"])
