"""Grade a completed exercise notebook, question by question.

    python -m utils.grade exercises/01_next_token_loop.ipynb          # one line per question
    python -m utils.grade my_copy.ipynb --json                        # for machines
    python -m utils.grade my_copy.ipynb --timeout 60                  # seconds per cell

The notebook runs top to bottom in a fresh kernel of this Python environment, one cell at a time.
A cell that raises, has a syntax error or runs past the timeout is recorded and execution goes
on with the next cell, so a mistake costs only the questions that depend on it. If the kernel
ignores the interrupt or dies, it is restarted and the cells that had succeeded are run again.

Scores come from the check calls in the notebook (``utils.checks``): each emits a record that
this module collects. Which questions exist and what they are worth comes from the chapter's
check module, named in the notebook's metadata (``llmcc.checks``), so a deleted check cell
scores 0 instead of vanishing. This is feedback for learners, not a proctoring system: code in
the notebook runs with your permissions and could forge its own records.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .checks import CHECK_MIME, questions_of

__all__ = ["grade_notebook", "QuestionScore", "GradeReport", "main"]

DEFAULT_TIMEOUT = 60  # seconds per cell; chapter-1 cells take well under 5 s
STARTUP_TIMEOUT = 60


@dataclass
class QuestionScore:
    id: str
    title: str
    points: int
    max_points: int
    message: str


@dataclass
class GradeReport:
    notebook: str
    questions: list[QuestionScore]
    cell_problems: list[str]  # errors and timeouts outside the checks, for the learner's information

    @property
    def score(self) -> int:
        return sum(q.points for q in self.questions)

    @property
    def max_score(self) -> int:
        return sum(q.max_points for q in self.questions)

    def as_dict(self) -> dict:
        return {"notebook": self.notebook, "score": self.score, "max_score": self.max_score,
                "questions": [asdict(q) for q in self.questions], "cell_problems": self.cell_problems}


def _kernel_manager():
    """A kernel in *this* Python environment, whatever kernelspecs the machine has installed."""
    import ipykernel.kernelspec
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    class _ThisEnvSpecs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name):
            return self.kernel_spec_class(resource_dir=ipykernel.kernelspec.RESOURCES,
                                          **ipykernel.kernelspec.get_kernel_dict())

    return AsyncKernelManager(kernel_name="python3", kernel_spec_manager=_ThisEnvSpecs())


def _first_line(text: str, limit: int = 160) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _execute(nb, cwd: str, timeout: int, log) -> list[str]:
    """Run every code cell in order; never raise for a cell's own failure. Returns the problems seen."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError
    from nbclient.util import run_sync

    problems: list[str] = []
    client = NotebookClient(
        nb, timeout=timeout, startup_timeout=STARTUP_TIMEOUT, allow_errors=True, interrupt_on_timeout=True,
        record_timing=False, km=_kernel_manager(), resources={"metadata": {"path": cwd}},
        error_on_timeout={"ename": "TimeoutError", "evalue": f"cell ran longer than {timeout} s",
                          "traceback": [f"TimeoutError: cell ran longer than {timeout} s and was interrupted"]},
    )
    succeeded: list[int] = []  # indices of cells that ran cleanly, replayed after a kernel restart

    def kernel_responds(probe_timeout: int = 10) -> bool:
        """After an interrupt: does the kernel answer a trivial request in time?"""
        try:
            reply = run_sync(client.kc.execute_interactive)("pass", timeout=probe_timeout,
                                                            output_hook=lambda msg: None)
        except Exception:  # TimeoutError, or a dead kernel
            return False
        return reply.get("content", {}).get("status") == "ok"

    def restart_and_replay():
        log("  restarting the kernel and re-running the cells that had succeeded")
        run_sync(client.km.restart_kernel)(now=True)
        client.kc.stop_channels()
        client.start_new_kernel_client()
        for j in succeeded:
            client.execute_cell(nb.cells[j], j)

    # The kernel's own stderr (start-up warnings) would only clutter the report; the learner's
    # output reaches us through the notebook protocol, not this stream.
    with client.setup_kernel(cwd=cwd, stderr=subprocess.DEVNULL):
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            start = time.monotonic()
            try:
                client.execute_cell(cell, i)
            except DeadKernelError:
                problems.append(f"cell {i}: the kernel died (out of memory, or the code exited the process)")
                restart_and_replay()
                continue
            errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            if time.monotonic() - start >= timeout:
                problems.append(f"cell {i}: ran longer than {timeout} s and was interrupted (an endless loop?)")
                if not kernel_responds():
                    problems.append(f"cell {i}: the kernel ignored the interrupt")
                    restart_and_replay()
            elif errors:
                e = errors[-1]
                problems.append(f"cell {i}: {e.get('ename')}: {_first_line(e.get('evalue', ''))}")
            else:
                succeeded.append(i)
    return problems


def _collect(nb) -> dict[str, dict]:
    """The last check record of each question, from the executed notebook's outputs."""
    records: dict[str, dict] = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            record = out.get("data", {}).get(CHECK_MIME) if out.get("output_type") in ("display_data", "execute_result") else None
            if isinstance(record, dict) and "id" in record:
                records[record["id"]] = record
    return records


def grade_notebook(path: str | os.PathLike, timeout: int = DEFAULT_TIMEOUT, log=lambda msg: None) -> GradeReport:
    """Execute a copy of the notebook at ``path`` (the file is not changed) and score it."""
    import nbformat

    path = Path(path)
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as e:
        raise ValueError(f"{path} is not a readable Jupyter notebook: {e}") from None
    module_name = nb.metadata.get("llmcc", {}).get("checks")
    if not module_name:
        raise ValueError(f"{path} has no 'llmcc.checks' entry in its metadata: is it one of the course's "
                         "exercise notebooks (exercises/NN_*.ipynb)?")
    questions = questions_of(importlib.import_module(module_name))
    problems = _execute(nb, str(path.resolve().parent), timeout, log)
    records = _collect(nb)
    scores = []
    for q in questions:
        r = records.get(q.id)
        if r is None:
            scores.append(QuestionScore(q.id, q.title, 0, q.points, "no result: its check cell did not run to the end "
                                                                    "(see the cell problems below)"))
        else:
            points = min(int(r.get("points", 0)), q.points) if r.get("passed") else 0
            scores.append(QuestionScore(q.id, q.title, points, q.points, _first_line(r.get("message", ""))))
    return GradeReport(str(path), scores, problems)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", help="the completed exercise notebook (.ipynb)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--timeout", type=int, default=DEFAULT_TIMEOUT, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    if args.timeout < 1:
        parser.error(f"--timeout must be at least 1 second, got {args.timeout}")
    log = (lambda msg: None) if args.json else (lambda msg: print(msg, file=sys.stderr))
    try:
        report = grade_notebook(args.notebook, timeout=args.timeout, log=log)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    width = max(len(q.title) for q in report.questions) if report.questions else 0
    for q in report.questions:
        tail = "" if q.points == q.max_points else f"  {q.message}"
        print(f"{q.id:>4}  {q.title:<{width}}  {q.points}/{q.max_points}{tail}")
    if report.cell_problems:
        print("cell problems:")
        for p in report.cell_problems:
            print(f"  {p}")
    print(f"score: {report.score}/{report.max_score}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
