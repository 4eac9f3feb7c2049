"""Bad inputs through the real ``genrec`` command, in a subprocess, as a new user would type them.

Each case must end with exit status 2, one short error line naming the problem (the expected
words are checked), no "Traceback" on stderr, and every file that existed before untouched:
nothing of the user's is deleted or replaced, and no half-written folder is left behind. The
cases come from shared/reviews/bad-inputs.md; add one whenever a new bad input is found.
``benchmarks/bench_reliability.py`` reports the count in BENCHMARKS.md.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]  # after `genrec`; {ws} is the workspace folder
    expect: str  # words the error line must contain (case-insensitive)


CASES = [
    # data prepare: files that cannot be read
    Case("prepare-empty-file", ("data", "prepare", "t1", "--path", "{ws}/empty.csv"), "is empty"),
    Case("prepare-latin1", ("data", "prepare", "t2", "--path", "{ws}/latin1.csv"), "not UTF-8"),
    Case("prepare-binary", ("data", "prepare", "t3", "--path", "{ws}/garbage.csv"), "not UTF-8"),
    Case("prepare-ragged", ("data", "prepare", "t4", "--path", "{ws}/ragged.csv"), "more fields"),
    Case("prepare-parquet-on-csv", ("data", "prepare", "t5", "--path", "{ws}/log.csv",
                                    "--format", "parquet"), "not a Parquet file"),
    Case("prepare-same-column", ("data", "prepare", "t6", "--path", "{ws}/log.csv", "--user",
                                 "user_id", "--item", "user_id"), "two different columns"),
    Case("prepare-negative-kcore", ("data", "prepare", "t7", "--path", "{ws}/log.csv",
                                    "--min-user", "-5"), "must be >= 0"),
    Case("prepare-threshold-no-rating", ("data", "prepare", "t8", "--path", "{ws}/log.csv",
                                         "--rating-threshold", "4"), "needs a rating column"),
    # data prepare: names and sources that would replace something
    Case("prepare-name-escapes", ("data", "prepare", "../../victim", "--path", "{ws}/log.csv"),
         "not a safe name"),
    Case("prepare-name-nested", ("data", "prepare", "a b/c", "--path", "{ws}/log.csv"),
         "not a safe name"),
    Case("prepare-preset-from-file", ("data", "prepare", "ml-100k", "--path", "{ws}/log.csv"),
         "is a preset"),
    Case("prepare-other-source", ("data", "prepare", "tiny", "--path", "{ws}/other.csv"),
         "already prepared from"),
    # train: --out never replaces what genrec did not make
    Case("train-out-user-folder", ("train", "ease", "--data", "tiny", "--out", "{ws}/victim"),
         "not a genrec run"),
    Case("train-out-file", ("train", "ease", "--data", "tiny", "--out", "{ws}/victim.txt"),
         "not a folder"),
    Case("train-out-fifo", ("train", "ease", "--data", "tiny", "--out", "{ws}/fifo"),
         "not a folder"),
    Case("train-out-symlink", ("train", "ease", "--data", "tiny", "--out", "{ws}/link"),
         "not a folder"),
    Case("train-out-other-model", ("train", "popularity", "--data", "tiny", "--out",
                                   "{ws}/runs/ease"), "--force"),
    Case("train-out-unwritable", ("train", "ease", "--data", "tiny", "--out", "/proc/x/run"),
         "cannot create"),
    # train: configs are validated before any work
    Case("train-negative-l2", ("train", "ease", "--data", "tiny", "--set", "params.l2=-5",
                               "--out", "{ws}/runs/new1"), "l2 must be > 0"),
    Case("train-ks-zero", ("train", "ease", "--data", "tiny", "--set", "eval.ks=[0]",
                           "--out", "{ws}/runs/new2"), "eval.ks"),
    Case("train-ks-huge", ("train", "ease", "--data", "tiny", "--set", "eval.ks=[1000000000]",
                           "--out", "{ws}/runs/new3"), "more than the"),
    Case("train-broken-toml", ("train", "ease", "--config", "{ws}/broken.toml"), "not valid TOML"),
    Case("train-negative-threads", ("train", "sasrec", "--data", "tiny", "--set",
                                    "train.threads=-1", "--out", "{ws}/runs/new4"), "threads"),
    Case("train-device-tpu", ("train", "sasrec", "--data", "tiny", "--set", "train.device=tpu",
                              "--out", "{ws}/runs/new5"), "device"),
    Case("train-data-missing-dir", ("train", "ease", "--data", "/nonexistent/dir"),
         "not a prepared dataset folder"),
    Case("train-data-negative-kcore", ("train", "ease", "--data", "tiny", "--set",
                                       "data.min_user=-5"), "must be >= 0"),
    # evaluate / recommend
    Case("evaluate-stage-train", ("evaluate", "{ws}/runs/ease", "--stage", "train"),
         "not one of valid, test"),
    Case("evaluate-stage-xyz", ("evaluate", "{ws}/runs/ease", "--stage", "xyz"),
         "not one of valid, test"),
    Case("evaluate-other-weights", ("evaluate", "{ws}/runs/wrong_npz"), "does not hold ease weights"),
    Case("evaluate-garbage-weights", ("evaluate", "{ws}/runs/garbage_npz"),
         "does not hold ease weights"),
    Case("evaluate-corrupt-run-json", ("evaluate", "{ws}/runs/corrupt_json"), "not valid JSON"),
    Case("evaluate-dataset-changed", ("evaluate", "{ws}/runs/changed_data"), "now holds other data"),
    Case("evaluate-per-user-existing", ("evaluate", "{ws}/runs/ease", "--per-user",
                                        "{ws}/victim.csv"), "already exists"),
    Case("recommend-fallback-random", ("recommend", "{ws}/runs/ease", "--user", "u1",
                                       "--fallback", "random"), "not one of popular"),
    Case("recommend-unknown-user", ("recommend", "{ws}/runs/ease", "--user", "nobody"),
         "--fallback popular"),
    Case("recommend-all-existing-out", ("recommend", "{ws}/runs/ease", "--all-users", "--out",
                                        "{ws}/victim.csv"), "already exists"),
    # ablate
    Case("ablate-negative-l2", ("ablate", "ease", "--set", "data.name=tiny", "--grid",
                                "params.l2=100,-5", "--out", "{ws}/runs/abl1"), "l2 must be > 0"),
    Case("ablate-model-typo", ("ablate", "eas", "--grid", "params.l2=1,2"),
         "neither a model"),
    Case("ablate-metric-before-training", ("ablate", "ease", "--set", "data.name=tiny", "--grid",
                                           "params.l2=100,500", "--metric", "NDCG@11", "--out",
                                           "{ws}/runs/abl2"), "will not be computed"),
    # embed / semantic-ids / report / serve
    Case("embed-dtype", ("embed", "items", "--data", "tiny", "--encoder", "minilm", "--dtype",
                         "int8"), "dtype"),
    Case("embed-device-tpu", ("embed", "items", "--data", "tiny", "--encoder", "minilm",
                              "--device", "tpu"), "device"),
    Case("embed-unsafe-name", ("embed", "items", "--data", "tiny", "--encoder", "tfidf", "--name",
                               "../x"), "not a safe"),
    Case("embed-template-unknown-column", ("embed", "items", "--data", "tiny", "--encoder",
                                           "tfidf", "--template", "{{nosuch}}"),
         "use those in --template"),
    Case("embed-no-text-columns", ("embed", "items", "--data", "notext", "--encoder", "tfidf"),
         "no text column"),
    Case("semantic-ids-method", ("semantic-ids", "build", "--data", "tiny", "--vectors", "tfidf",
                                 "--method", "pq"), "not one of"),
    Case("report-out-user-folder", ("data", "report", "tiny", "--out", "{ws}/victim"),
         "not a genrec report"),
    Case("report-out-unwritable", ("data", "report", "tiny", "--out", "/proc/forbidden"),
         "cannot write"),
    Case("serve-port-in-use", ("serve", "{ws}/runs/ease", "--port", "{busy_port}"),
         "cannot listen"),
    Case("serve-bad-host", ("serve", "{ws}/runs/ease", "--host", "999.1.1.1", "--port", "1"),
         "not an address"),
]
if not __import__("torch").cuda.is_available():
    CASES.append(Case("train-device-cuda", ("train", "sasrec", "--data", "tiny", "--set",
                                            "train.device=cuda", "--out", "{ws}/runs/new6"),
                      "no usable CUDA"))


def _write_logs(ws: Path) -> None:
    rng = np.random.default_rng(0)
    rows = ["user_id,item_id,ts"]
    for u in range(40):
        for t, i in enumerate(rng.choice(30, size=8, replace=False)):
            rows.append(f"u{u},i{i},{1000 * u + t}")
    (ws / "log.csv").write_text("\n".join(rows) + "\n")
    (ws / "other.csv").write_text("\n".join(rows[:100]) + "\n")
    (ws / "items.csv").write_text("item_id,title\n" + "".join(
        f"i{i},{w} {v} item {i}\n" for i, (w, v) in enumerate(
            zip(["red", "blue", "green"] * 10, ["lamp", "chair", "desk", "sofa", "rug"] * 6))))
    (ws / "empty.csv").write_bytes(b"")
    (ws / "latin1.csv").write_bytes(b"user_id,item_id\nu1,caf\xe9\nu2,th\xe9\n")
    (ws / "garbage.csv").write_bytes(bytes(rng.integers(128, 256, size=400, dtype=np.uint8)))
    (ws / "ragged.csv").write_text("user_id,item_id\nu1,i1\nu2,i2,extra,fields\nu3,i3\n")
    (ws / "broken.toml").write_text("[data\nname = 'x'\n")


def _genrec(ws: Path, *argv: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "GENREC_HOME": str(ws / "home"), "COLUMNS": "100"}
    env.pop("GENREC_DEBUG", None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "genrec.cli", *argv], cwd=ws, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace with a prepared dataset, a trained run, damaged runs and the user's own files."""
    ws = tmp_path_factory.mktemp("bad_inputs")
    _write_logs(ws)
    env = {**os.environ, "GENREC_HOME": str(ws / "home")}
    script = ("from genrec.data.prepare import prepare; prepare('tiny', path='log.csv', "
              "mapping={'user': 'user_id', 'item': 'item_id', 'time': 'ts', "
              "'items_path': 'items.csv'})")
    subprocess.run([sys.executable, "-c", script], cwd=ws, env=env, check=True)
    subprocess.run([sys.executable, "-c", script.replace("'tiny'", "'notext'").replace(
        ", 'items_path': 'items.csv'", "")], cwd=ws, env=env, check=True)
    for argv in (("train", "ease", "--data", "tiny", "--set", "params.l2=10", "--out",
                  "runs/ease"),
                 ("embed", "items", "--data", "tiny", "--encoder", "tfidf")):
        done = _genrec(ws, *argv)
        assert done.returncode == 0, done.stderr
    import shutil

    for name in ("wrong_npz", "garbage_npz", "corrupt_json", "changed_data"):
        shutil.copytree(ws / "runs/ease", ws / "runs" / name)
    np.savez(ws / "runs/wrong_npz/model.npz", counts=np.zeros(3))  # another model's weights
    (ws / "runs/garbage_npz/model.npz").write_bytes(b"PK\x03\x04 not really a zip")
    (ws / "runs/corrupt_json/run.json").write_text('{"model": "ease", ')
    info = json.loads((ws / "runs/changed_data/run.json").read_text())
    (ws / "runs/changed_data/run.json").write_text(json.dumps({**info, "dataset_hash": "0" * 16}))
    # the user's own things
    (ws / "victim" / "sub").mkdir(parents=True)
    (ws / "victim" / "notes.txt").write_text("my notes")
    (ws / "victim" / "sub" / "data.csv").write_text("a,b\n1,2\n")
    (ws / "victim.txt").write_text("keep me")
    (ws / "victim.csv").write_text("keep,me\n")
    os.mkfifo(ws / "fifo")
    (ws / "link").symlink_to(ws / "victim", target_is_directory=True)
    return ws


def _snapshot(root: Path) -> dict[str, str]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(root))] = "link:" + os.readlink(p)
        elif p.is_file():
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
        elif p.is_fifo():
            out[str(p.relative_to(root))] = "fifo"
    return out


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_clear_line_and_loses_nothing(ws, case):
    with socket.socket() as busy:  # a port that is taken, for the serve case
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        argv = [a.format(ws=ws, busy_port=busy.getsockname()[1]) for a in case.argv]
        before = _snapshot(ws)
        done = _genrec(ws, *argv)
    after = _snapshot(ws)
    assert done.returncode == 2, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr
    error = [line for line in done.stderr.splitlines() if line.strip()]
    assert error and error[-1].startswith("error:"), done.stderr
    assert case.expect.lower() in " ".join(error).lower(), done.stderr
    changed = [p for p, h in before.items() if after.get(p) != h]
    assert not changed, f"{case.id} changed or deleted {changed}"
    leftovers = [p for p in set(after) - set(before) if "/." in f"/{p}"]
    assert not leftovers, f"{case.id} left temporary files {leftovers}"


def test_debug_flag_shows_the_traceback(ws):
    done = _genrec(ws, "--debug", "evaluate", str(ws / "runs/corrupt_json"))
    assert done.returncode == 1 and "Traceback" in done.stderr
    done = _genrec(ws, "evaluate", str(ws / "runs/corrupt_json"), env_extra={"GENREC_DEBUG": "1"})
    assert "Traceback" in done.stderr


def test_version():
    done = subprocess.run([sys.executable, "-m", "genrec.cli", "--version"], capture_output=True,
                          text=True)
    assert done.returncode == 0 and done.stdout.startswith("genrec ")
