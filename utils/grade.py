"""Grade a completed exercise notebook, question by question.

    python -m utils.grade exercises/01_next_token_loop.ipynb          # one line per question
    python -m utils.grade my_copy.ipynb --json                        # for machines
    python -m utils.grade my_copy.ipynb --timeout 60                  # seconds per cell

The notebook runs top to bottom in a fresh kernel of this Python environment, one cell at a time,
after every stored output has been cleared: only what runs now counts. A cell that raises, has a
syntax error or runs past the timeout is recorded and execution goes on with the next cell, so a
mistake costs only the questions that depend on it. If the kernel ignores the interrupt, dies, or
is stopped by the notebook (``exit()``), it is restarted, the cells that had succeeded are run
again (a cell that kills the kernel again is left out), and grading goes on.

Scores come from the check calls in the notebook (``utils.checks``): each emits a record that
this module collects. Which questions exist and what they are worth comes from the chapter's
check module, named in the notebook's metadata (``llmcc.checks``), so a deleted check cell
scores 0 instead of vanishing. A record is trusted only as far as the check module allows: its
points never exceed the question's, and a malformed record scores 0. A check that fails because
of a bug in ``utils.checks`` is listed as a checker error. This is feedback for learners, not a
proctoring system: code in the notebook runs with your permissions and could forge its own records.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .checks import CHECK_MIME, Question, questions_of
from .validation import check_int

__all__ = ["grade_notebook", "grade_this_notebook", "QuestionScore", "GradeReport", "NO_FRONTEND", "main"]

DEFAULT_TIMEOUT = 60  # seconds per cell; chapter-1 cells take well under 5 s
STARTUP_TIMEOUT = 60
CHECKS_PACKAGE = "utils.checks"
MAX_RESTARTS = 20  # a notebook that kills its kernel more often than this stops being run
# Set for kernels that no person watches (the grader, the tests, `notebook_tools execute`): tqdm
# draws no progress bar (instead of storing a widget frozen at "0%"), and `grade_this_notebook`
# does not start a grading of its own inside a grading.
NO_FRONTEND = {"TQDM_DISABLE": "1", "LLMCC_NO_FRONTEND": "1"}


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


def _one_line(text, limit: int | None = None) -> str:
    """Whitespace collapsed to single spaces; cut (with "...") only if ``limit`` is given. Hints are never cut."""
    line = " ".join(str(text).split())
    return line if limit is None or len(line) <= limit else line[: limit - 3] + "..."


def _clear_outputs(nb) -> None:
    """Forget every stored output, so that only what runs in this grading counts (an empty cell is
    not executed, and its stored outputs, forged or stale, would otherwise be read)."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)


def _execute(nb, cwd: str, timeout: int, log) -> list[str]:
    """Run every code cell in order; never raise for a cell's own failure. Returns the problems seen."""
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError
    from nbclient.util import run_sync

    problems: list[str] = []
    stopped = {"exit": False}  # set when a cell asks the kernel to exit (exit(), quit())

    def on_executed(cell, cell_index, execute_reply):
        payload = (execute_reply or {}).get("content", {}).get("payload", [])
        if any(p.get("source") == "ask_exit" and not p.get("keepkernel") for p in payload):
            stopped["exit"] = True

    client = NotebookClient(
        nb, timeout=timeout, startup_timeout=STARTUP_TIMEOUT, allow_errors=True, interrupt_on_timeout=True,
        record_timing=False, km=_kernel_manager(), resources={"metadata": {"path": cwd}},
        on_cell_executed=on_executed,
        error_on_timeout={"ename": "TimeoutError", "evalue": f"cell ran longer than {timeout} s",
                          "traceback": [f"TimeoutError: cell ran longer than {timeout} s and was interrupted"]},
    )
    succeeded: list[int] = []  # indices of cells that ran cleanly, replayed after a kernel restart
    restarts = 0

    def kernel_responds(probe_timeout: int = 10) -> bool:
        """After an interrupt: does the kernel answer a trivial request in time?"""
        try:
            reply = run_sync(client.kc.execute_interactive)("pass", timeout=probe_timeout,
                                                            output_hook=lambda msg: None)
        except Exception:  # TimeoutError, or a dead kernel
            return False
        return reply.get("content", {}).get("status") == "ok"

    def run_cell(i: int) -> str:
        """Execute cell i. Returns "ok", "error", "slow" (interrupted at the timeout), "hung" (it ignored
        the interrupt), "exit" (it called exit() or quit()) or "dead" (the kernel died)."""
        stopped["exit"] = False
        start = time.monotonic()
        try:
            client.execute_cell(nb.cells[i], i)
        except DeadKernelError:
            return "dead"
        if stopped["exit"]:  # the cell finished, but the kernel is shutting down behind it
            return "exit"
        if time.monotonic() - start >= timeout:
            return "slow" if kernel_responds() else "hung"
        errors = [o for o in nb.cells[i].get("outputs", []) if o.get("output_type") == "error"]
        return "error" if errors else "ok"

    def restart() -> None:
        """A fresh kernel with the state of the cells that succeeded; a cell that stops it again is left out."""
        nonlocal restarts
        while True:
            restarts += 1
            if restarts > MAX_RESTARTS:
                raise RuntimeError(f"the kernel was restarted {MAX_RESTARTS} times")
            log("  restarting the kernel and re-running the cells that had succeeded")
            run_sync(client.km.restart_kernel)(now=True)
            client.kc.stop_channels()
            client.start_new_kernel_client()
            for j in list(succeeded):
                outcome = run_cell(j)
                if outcome in ("exit", "dead", "hung"):
                    problems.append(f"cell {j}: stopped the kernel when it was run again after a restart ({outcome}); "
                                    "left out")
                    succeeded.remove(j)
                    break  # restart once more, without that cell
                if outcome != "ok":
                    problems.append(f"cell {j}: failed when it was run again after a restart ({outcome})")
            else:
                return

    def describe(i: int, outcome: str) -> list[str]:
        if outcome in ("slow", "hung"):
            lines = [f"cell {i}: ran longer than {timeout} s and was interrupted (a slow cell, or an endless loop; "
                     "--timeout gives each cell more time)"]
            return lines + ([f"cell {i}: the kernel ignored the interrupt; restarted it"] if outcome == "hung" else [])
        if outcome == "exit":
            return [f"cell {i}: called exit() or quit(), which stops the kernel; restarted it and re-ran the cells "
                    "that had succeeded (remove the call)"]
        if outcome == "dead":
            return [f"cell {i}: the kernel died (out of memory, or the code exited the process); restarted it and "
                    "re-ran the cells that had succeeded"]
        e = [o for o in nb.cells[i].get("outputs", []) if o.get("output_type") == "error"][-1]
        return [f"cell {i}: {e.get('ename')}: {_one_line(e.get('evalue', ''), 300)}"]

    # The kernel's own stderr (start-up warnings) would only clutter the report; the learner's
    # output reaches us through the notebook protocol, not this stream.
    with client.setup_kernel(cwd=cwd, stderr=subprocess.DEVNULL):
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != "code" or not cell.source.strip():
                continue
            try:
                outcome = run_cell(i)
                if outcome == "ok":
                    succeeded.append(i)
                    continue
                problems.extend(describe(i, outcome))
                if outcome in ("hung", "exit", "dead"):
                    restart()
            except Exception as e:  # the grader reports, it never crashes: the remaining cells are not run
                problems.append(f"cell {i}: grading stopped here: {type(e).__name__}: {_one_line(e, 300)}")
                break
    return problems


def _collect(nb) -> dict[str, dict]:
    """The last check record of each question, from the outputs produced in this run."""
    records: dict[str, dict] = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") not in ("display_data", "execute_result"):
                continue
            data = out.get("data")
            record = data.get(CHECK_MIME) if isinstance(data, dict) else None
            if isinstance(record, dict) and isinstance(record.get("id"), str):
                records[record["id"]] = record
    return records


def _score(q: Question, record: dict | None) -> tuple[int, str, str | None]:
    """(points, message, problem) for one question from its record; malformed records score 0."""
    if record is None:
        return 0, "no result: no check of this question ran to the end (see the cell problems, if any)", None
    passed, points, message = record.get("passed"), record.get("points", 0), record.get("message", "")
    if not isinstance(passed, bool) or isinstance(points, bool) or not isinstance(points, (int, float)) \
            or not isinstance(message, str):
        return 0, (f"malformed check record (passed={passed!r:.20}, points={points!r:.20}); run the check cell "
                   "again"), f"{q.id}: malformed check record"
    if record.get("checker_error"):
        return 0, message, f"{q.id}: checker error (a bug in utils.checks, not in your answer): {_one_line(message, 300)}"
    return (max(0, min(int(points), q.points)) if passed else 0), message, None


def _check_module(nb, path: Path):
    """The notebook's check module (metadata ``llmcc.checks``), or a ValueError that says what is wrong."""
    llmcc = nb.metadata.get("llmcc")
    name = llmcc.get("checks") if isinstance(llmcc, dict) else None
    if not name:
        raise ValueError(f"{path} has no 'llmcc.checks' entry in its metadata: is it one of the course's "
                         "exercise notebooks (exercises/NN_*.ipynb)?")
    if not isinstance(name, str) or not re.fullmatch(re.escape(CHECKS_PACKAGE) + r"\.[a-z][a-z0-9_]*", name):
        raise ValueError(f"{path}: llmcc.checks must name a module of {CHECKS_PACKAGE} such as "
                         f"'{CHECKS_PACKAGE}.ch01', got {name!r}")
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError:
        raise ValueError(f"{path}: llmcc.checks names {name!r}, which does not exist") from None
    questions = getattr(module, "QUESTIONS", None)
    if not isinstance(questions, dict) or not questions or \
            not all(isinstance(q, Question) for q in questions.values()):
        raise ValueError(f"{path}: {name} is not a check module (it has no QUESTIONS registry)")
    return module


def grade_notebook(path: str | os.PathLike, timeout: int = DEFAULT_TIMEOUT, log=lambda msg: None) -> GradeReport:
    """Execute a copy of the notebook at ``path`` (the file is not changed) and score it.

    Raises ``ValueError`` (one line) for a file that is not a course exercise or a bad ``timeout``.
    """
    import nbformat

    timeout = check_int(timeout, "timeout", minimum=1)  # seconds per cell; 0 would interrupt every cell at once
    path = Path(path)
    try:
        nb = nbformat.read(path, as_version=4)
    except FileNotFoundError:
        raise
    except Exception as e:
        raise ValueError(f"{path} is not a readable Jupyter notebook: {_one_line(e, 300)}") from None
    questions = questions_of(_check_module(nb, path))
    _clear_outputs(nb)
    saved = {key: os.environ.get(key) for key in NO_FRONTEND}
    os.environ.update(NO_FRONTEND)  # inherited by the kernels started below
    try:
        problems = _execute(nb, str(path.resolve().parent), timeout, log)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    records = _collect(nb)
    scores = []
    for q in questions:
        points, message, problem = _score(q, records.get(q.id))
        scores.append(QuestionScore(q.id, q.title, points, q.points, _one_line(message)))
        if problem:
            problems.append(problem)
    return GradeReport(str(path), scores, problems)


def _this_notebook() -> tuple[Path | None, dict | None]:
    """Where the calling kernel's notebook is: (a saved file, or None; its content, or None).

    Colab keeps the notebook in the browser, so its current content is asked from the front end.
    Jupyter (jupyter-server 2 and newer) tells the kernel its notebook's path (JPY_SESSION_NAME,
    also IPython's ``__session__``); VS Code sets ``__vsc_ipynb_file__``.
    """
    try:
        from google.colab import _message  # only in Colab
    except ImportError:
        pass
    else:
        reply = _message.blocking_request("get_ipynb", request="", timeout_sec=60)
        if reply and reply.get("ipynb"):
            return None, reply["ipynb"]
    candidates = [os.environ.get("JPY_SESSION_NAME")]
    try:
        ns = get_ipython().user_ns  # noqa: F821 - defined inside IPython kernels
        candidates += [ns.get("__session__"), ns.get("__vsc_ipynb_file__")]
    except NameError:
        pass
    for candidate in candidates:
        if candidate and str(candidate).endswith(".ipynb") and Path(candidate).is_file():
            return Path(candidate), None
    return None, None


def grade_this_notebook(path: str | os.PathLike | None = None, timeout: int = DEFAULT_TIMEOUT) -> GradeReport | None:
    """Grade the notebook this is called from, question by question, and print the report.

    The last cell of every exercise calls it. It gives the same scores as
    ``python -m utils.grade NOTEBOOK`` (it is the same function): a fresh copy runs top to bottom
    in a new kernel, so only code in the notebook counts, not what this kernel has in memory. In
    Colab it grades the notebook as it is now; in Jupyter it grades the saved file (save first),
    found from the kernel's session, or from ``path``. Inside a grading (or a test run) it does
    nothing, so the grading cell does not grade itself. Defined for the exercises of every chapter.
    """
    import json
    import tempfile

    if os.environ.get("LLMCC_NO_FRONTEND"):
        print("(a tool is running this notebook, so it is not graded from inside; run this cell yourself)")
        return None
    copy = None
    if path is None:
        path, content = _this_notebook()
        if path is None and content is None:
            raise ValueError("cannot tell which notebook this is; pass its path, for example "
                             "grade_this_notebook('exercises/01_next_token_loop.ipynb')")
        if content is not None:  # Colab: a copy in the working folder, where the notebook's own files are
            handle, copy = tempfile.mkstemp(prefix=".grading-", suffix=".ipynb", dir=os.getcwd())
            with os.fdopen(handle, "w", encoding="utf-8") as f:
                json.dump(content, f)
            path = Path(copy)
        else:
            print(f"grading the saved file {path} (save the notebook first to include your latest changes)")
    try:
        report = grade_notebook(path, timeout=timeout)
    finally:
        if copy is not None:
            os.unlink(copy)
    _print_text(report)
    return report


def _print_text(report: GradeReport, width: int = 100) -> None:
    """One line per question; a hint goes, wrapped and whole, on the lines below its question."""
    title_width = max(len(q.title) for q in report.questions) if report.questions else 0
    for q in report.questions:
        print(f"{q.id:>4}  {q.title:<{title_width}}  {q.points}/{q.max_points}")
        if q.points != q.max_points and q.message:
            print(textwrap.fill(q.message, width=width, initial_indent=" " * 6, subsequent_indent=" " * 6))
    if report.cell_problems:
        print("cell problems:")
        for p in report.cell_problems:
            print(textwrap.fill(p, width=width, initial_indent="  ", subsequent_indent="    "))
    print(f"score: {report.score}/{report.max_score}")


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
    except (ValueError, OSError) as e:  # not an exercise, unreadable, missing: one line, never a traceback
        message = _one_line(e) if not isinstance(e, FileNotFoundError) else f"{args.notebook}: no such file"
        if args.json:
            print(json.dumps({"notebook": args.notebook, "error": message}, indent=2))
        else:
            print(f"error: {message}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        _print_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
