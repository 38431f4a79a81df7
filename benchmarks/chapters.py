"""How long each chapter notebook takes to run top to bottom, against the course's goal of
under 60 seconds on a 2-core CPU.

    python benchmarks/chapters.py                 # every chapter
    python benchmarks/chapters.py 11 12           # chapters whose file names start with these numbers

Each notebook runs in a fresh kernel from its own folder, as a reader's would (on a copy: the
stored outputs are not touched). Prints one line per chapter and the slowest cell; asserts
nothing (speed depends on the machine).
"""

from __future__ import annotations

import datetime
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
GOAL = 60.0


def _seconds(cell) -> float:
    e = cell.get("metadata", {}).get("execution", {})
    if "iopub.execute_input" not in e or "shell.execute_reply" not in e:
        return 0.0
    end, start = (datetime.datetime.fromisoformat(e[k].replace("Z", "+00:00"))
                  for k in ("shell.execute_reply", "iopub.execute_input"))
    return (end - start).total_seconds()


def main(argv: list[str]) -> int:
    paths = sorted((ROOT / "chapters").glob("*.ipynb"))
    if argv:
        paths = [p for p in paths if any(p.name.startswith(a.zfill(2)) for a in argv)]
    print(f"{'chapter':34} {'seconds':>7}  slowest cell")
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        NotebookClient(nb, timeout=1800, record_timing=True, resources={"metadata": {"path": str(path.parent)}}).execute()
        total = time.perf_counter() - start
        i, cell = max(enumerate(nb.cells), key=lambda ic: _seconds(ic[1]))
        first = cell.source.splitlines()[0][:40] if cell.source else ""
        flag = "  OVER THE GOAL" if total > GOAL else ""
        print(f"{path.name:34} {total:7.1f}  cell {i} ({_seconds(cell):.1f} s: {first}){flag}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
