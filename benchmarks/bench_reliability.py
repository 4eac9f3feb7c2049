"""Reliability: every bad input found so far, run through the real CLI; record the tally.

Runs ``tests/cli/test_bad_inputs.py`` (each case: exit 2, one error line naming the problem, no
traceback, every pre-existing file untouched, no temporary left) and records how many bad inputs
were tried, how many were handled, and how many lost or changed a file of the user's.

    .venv/bin/python benchmarks/bench_reliability.py
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _record import record  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TABLE = "Reliability — bad inputs through the CLI"


def main() -> None:
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf",
                           "tests/cli/test_bad_inputs.py::test_bad_input_is_one_clear_line_and_loses_nothing"],
                          cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    tail = done.stdout.strip().splitlines()[-1]
    passed = int(m.group(1)) if (m := re.search(r"(\d+) passed", tail)) else 0
    failed = int(m.group(1)) if (m := re.search(r"(\d+) failed", tail)) else 0
    lost = len(re.findall(r"changed or deleted", done.stdout))
    tried = passed + failed
    row = {"dataset": "tiny planted log + the user's own files (tests/cli/test_bad_inputs.py)",
           "protocol": "each bad input in a subprocess: exit 2, one error line, no traceback, "
                       "pre-existing files byte-identical",
           "metrics": f"tried {tried} · handled {passed} · failed {failed} · files lost or "
                      f"changed in {lost} case(s)",
           "wall time": f"{seconds:.0f} s", "peak memory": "–"}
    record(TABLE, row, metrics={"tried": tried, "handled": passed, "failed": failed,
                                "data_loss_cases": lost})
    print(row["metrics"])
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    main()
