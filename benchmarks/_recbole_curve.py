"""RecBole's run_recbole.py, logging (time, valid NDCG@10) after every epoch: the peer side of
``bench_sequential.py --only peer`` (time-to-quality).

Run by the RecBole venv's python, not genrec's: ``bench_sequential._start_recbole`` copies this
file into the run's directory and starts it there with run_recbole.py's own arguments. It patches
``recbole.trainer.trainer.early_stopping`` (called once per validation) and ``Trainer.fit``
before run_recbole.main() wraps them for its budget, so run_recbole itself runs unchanged.

Environment: PEER_HARNESS (run_recbole.py, put on sys.path), CURVE_OUT (the JSON-lines file:
a {"event": "fit_start", "t_process"} row, then {"epoch", "valid", "t_process", "cpu", "t_fit"}
per validation, seconds since this process started / since fit began).
"""

import json
import os
import resource
import sys
import time

T0 = time.time()


def main() -> None:
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    sys.path.insert(0, os.path.dirname(os.environ["PEER_HARNESS"]))
    import recbole.trainer.trainer as rbt
    import run_recbole

    out, state = os.environ["CURVE_OUT"], {"fit": None, "epoch": 0}
    orig_es, orig_fit = rbt.early_stopping, rbt.Trainer.fit

    def es(value, best, cur_step, max_step, bigger=True):  # called once per validation
        now = time.time()
        with open(out, "a") as f:
            ru = resource.getrusage(resource.RUSAGE_SELF)
            f.write(json.dumps({"epoch": state["epoch"], "valid": float(value),
                                "t_process": round(now - T0, 2),
                                "cpu": round(ru.ru_utime + ru.ru_stime, 2),
                                "t_fit": round(now - state["fit"], 2) if state["fit"] else None})
                    + "\n")
        state["epoch"] += 1
        return orig_es(value, best, cur_step, max_step, bigger)

    def fit(self, *a, **k):
        state["fit"] = time.time()
        with open(out, "a") as f:
            f.write(json.dumps({"event": "fit_start", "t_process": round(state["fit"] - T0, 2)})
                    + "\n")
        return orig_fit(self, *a, **k)

    rbt.early_stopping, rbt.Trainer.fit = es, fit
    run_recbole.main()


if __name__ == "__main__":
    main()
