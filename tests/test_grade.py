"""The grader: full marks for the solution, zero for the blank exercise, and a broken notebook
loses only the questions its broken cells touch."""

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from utils.grade import grade_notebook, main

SOLUTIONS = sorted(p.name for p in (Path(__file__).resolve().parent.parent / "solutions").glob("*.ipynb"))


# Generous: these tests are about scores, not speed, and a loaded 2-core machine once pushed chapter 10's
# fine-tuning cell past the grader's 60 s default.
SLOW_MACHINE_TIMEOUT = 600


@pytest.mark.parametrize("name", SOLUTIONS)
def test_solution_scores_full_marks(root, name):
    report = grade_notebook(root / "solutions" / name, timeout=SLOW_MACHINE_TIMEOUT)
    assert report.max_score > 0
    assert report.score == report.max_score, [q for q in report.questions if q.points < q.max_points]
    assert report.cell_problems == []


@pytest.mark.parametrize("name", SOLUTIONS)
def test_blank_exercise_scores_zero_without_crashing(root, name):
    report = grade_notebook(root / "exercises" / name, timeout=SLOW_MACHINE_TIMEOUT)
    assert report.score == 0 and report.max_score > 0
    assert report.cell_problems == []  # "Run all" on a fresh exercise reaches every check
    assert all(("not implemented" in q.message or "not answered" in q.message) for q in report.questions)


def _notebook(tmp_path, cells, checks="utils.checks.ch01", name="learner.ipynb"):
    nb = nbformat.v4.new_notebook()
    nb.metadata["llmcc"] = {"checks": checks}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


GOOD_SOFTMAX = (
    "def softmax(x):\n    x = np.asarray(x, float)\n    e = np.exp(x - x.max(-1, keepdims=True))\n"
    "    return e / e.sum(-1, keepdims=True)"
)


def test_each_failure_costs_only_its_question(tmp_path):
    path = _notebook(tmp_path, [
        "import numpy as np\nfrom utils.checks import ch01 as check",
        "check.conditional_probability(3 / 8)",                             # q1: right
        "def apply_temperature(z, t)\n    return z / t",                   # syntax error
        "check.apply_temperature(apply_temperature)",                       # q4: NameError
        "while True:\n    pass",                                            # endless loop, interruptible
        GOOD_SOFTMAX,
        "check.softmax(softmax)",                                           # q2: right, after the loop
        "import time\nwhile True:\n    try:\n        time.sleep(0.05)\n    except BaseException:\n        pass",
        "check.lowered_logit(softmax([2.2, 2.0, 0.5])[0])",                 # q3: right, after a restart
        "raise RuntimeError('boom')",
        "check.extreme_temperatures(1.0, 0.4615)",                          # q5: right
        "import os\nos._exit(3)",                                           # the kernel dies
        "check.cross_entropy(lambda z, t: float(-(np.asarray(z) - np.asarray(z).max()"
        " - np.log(np.exp(np.asarray(z) - np.asarray(z).max()).sum()))[t]))",
    ])
    report = grade_notebook(path, timeout=3)
    earned = {q.id: q.points for q in report.questions}
    assert earned == {"q1": 1, "q2": 2, "q3": 1, "q4": 0, "q5": 1, "q6": 0, "q7": 0, "q8": 1, "q9": 0, "q10": 0}
    problems = "\n".join(report.cell_problems)
    for expected in ["SyntaxError", "NameError", "ran longer than 3 s", "ignored the interrupt", "RuntimeError: boom",
                     "kernel died"]:
        assert expected in problems, problems


def test_cli_text_and_json(root, capsys):
    path = root / "solutions" / "01_next_token_loop.ipynb"
    assert main([str(path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "score: 15/15"
    assert sum(line.strip().startswith("q") for line in lines) == 10
    assert main([str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["score"] == data["max_score"] == 15 and len(data["questions"]) == 10


def test_cli_rejects_what_is_not_an_exercise(tmp_path, capsys):
    (tmp_path / "bad.ipynb").write_text("{not json")
    assert main([str(tmp_path / "bad.ipynb")]) == 2
    assert "not a readable Jupyter notebook" in capsys.readouterr().err
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "plain.ipynb")
    assert main([str(tmp_path / "plain.ipynb")]) == 2
    assert "llmcc.checks" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.ipynb")]) == 2


def test_module_entry_point(root):
    out = subprocess.run([sys.executable, "-m", "utils.grade", "--help"], capture_output=True, text=True, cwd=root)
    assert out.returncode == 0 and "--timeout" in out.stdout


# --- issue 18: the grader under hostile notebooks -------------------------------------------------

def _solution_with(root, tmp_path, edit, name="edited.ipynb"):
    """Chapter 1's solution, changed by ``edit(cells)``, written next to the test."""
    nb = nbformat.read(root / "solutions" / "01_next_token_loop.ipynb", as_version=4)
    edit(nb.cells)
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def test_stored_outputs_are_cleared_so_forged_records_score_nothing(root, tmp_path):
    """Empty cells are not executed; before issue 18 their stored outputs (here: the solution's real
    check records) were still read, so a notebook without any code scored 15/15."""
    def blank_every_cell(cells):
        for cell in cells:
            if cell.cell_type == "code":
                cell.source = "  \n"  # whitespace only; the stored outputs stay in the file
    path = _solution_with(root, tmp_path, blank_every_cell)
    assert any(c.get("outputs") for c in nbformat.read(path, as_version=4).cells)  # the forged records are there
    report = grade_notebook(path, timeout=SLOW_MACHINE_TIMEOUT)
    assert report.score == 0 and report.max_score == 15


def test_exit_costs_nothing_and_a_kernel_death_during_replay_no_crash(root, tmp_path):
    """exit() in a cell: the kernel is restarted and the rest is graded (before: 4/15 or a traceback).
    A cell that kills the kernel only when re-run (after a later death) is left out of the replay."""
    def add_exits(cells):
        code = [i for i, c in enumerate(cells) if c.cell_type == "code"]
        # dies the second time it runs: a replay after a restart must survive it
        cells.insert(code[3] + 1, nbformat.v4.new_code_cell(
            "import os, pathlib\nmarker = pathlib.Path('ran_once')\nif marker.exists():\n    os._exit(1)\n"
            "marker.touch()"))
        cells.insert(code[5] + 2, nbformat.v4.new_code_cell("exit()"))
    report = grade_notebook(_solution_with(root, tmp_path, add_exits), timeout=SLOW_MACHINE_TIMEOUT)
    assert report.score == report.max_score == 15, [q for q in report.questions if q.points < q.max_points]
    problems = "\n".join(report.cell_problems)
    assert "called exit()" in problems and "left out" in problems, problems


def test_malformed_records_and_checker_errors_are_reported_not_raised(tmp_path):
    path = _notebook(tmp_path, [
        "from IPython.display import display\n"
        "display({'text/plain': 'x', 'application/vnd.llmcc.check+json': "
        "{'id': 'q1', 'passed': True, 'points': 'abc', 'max_points': 1, 'message': ''}}, raw=True)",
        "display({'text/plain': 'x', 'application/vnd.llmcc.check+json': "
        "{'id': 'q2', 'passed': True, 'points': 1000, 'max_points': 2, 'message': ''}}, raw=True)",
        "from utils.checks import ch01, report\nreport(ch01.QUESTIONS['q3'], False, 'boom', checker_error=True)",
    ])
    report = grade_notebook(path, timeout=30)
    earned = {q.id: q.points for q in report.questions}
    assert earned["q1"] == 0 and "malformed check record" in report.questions[0].message
    assert earned["q2"] == 2  # never more than the question is worth
    assert any(p.startswith("q3: checker error") for p in report.cell_problems), report.cell_problems


@pytest.mark.parametrize("checks,message", [
    ("utils.checks.ch99", "'utils.checks.ch99', which does not exist"),
    ("os", "llmcc.checks must name a module of utils.checks"),
    (5, "llmcc.checks must name a module of utils.checks"),
    ("utils.checks", "llmcc.checks must name a module of utils.checks"),
])
def test_malformed_metadata_gives_one_line_not_a_traceback(tmp_path, capsys, checks, message):
    path = _notebook(tmp_path, ["1 + 1"], checks=checks)
    with pytest.raises(ValueError, match=message):
        grade_notebook(path)
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message.split("'")[0] in err
    assert main([str(path), "--json"]) == 2
    data = json.loads(capsys.readouterr().out)
    assert message.split("'")[0] in data["error"]


@pytest.mark.parametrize("timeout", [0, -5, True, 2.5])
def test_the_api_refuses_a_timeout_that_is_not_a_positive_integer(root, timeout):
    with pytest.raises(ValueError, match="timeout must be an integer >= 1"):
        grade_notebook(root / "exercises" / "01_next_token_loop.ipynb", timeout=timeout)


def test_text_report_wraps_long_hints_instead_of_cutting_them(tmp_path, capsys):
    path = _notebook(tmp_path, [
        "import numpy as np\nfrom utils.checks import ch01 as check\nfrom utils.sampling import softmax",
        # the off-by-one rule: its hint is longer than the 160 characters the report used to keep
        "def top_p_filter(z, p):\n    z = np.asarray(z, float)\n    probs = softmax(z)\n"
        "    order = np.argsort(-probs, axis=-1, kind='stable')\n"
        "    keep_sorted = np.cumsum(np.take_along_axis(probs, order, -1), axis=-1) < p\n"
        "    keep_sorted[..., 0] = True\n    keep = np.zeros_like(keep_sorted)\n"
        "    np.put_along_axis(keep, order, keep_sorted, axis=-1)\n    return np.where(keep, z, -np.inf)",
        "check.top_p_filter(top_p_filter)",
        "while True:\n    pass",
    ])
    assert main([str(path), "--timeout", "5"]) == 0
    out = capsys.readouterr().out
    q7 = next(q for q in grade_notebook(path, timeout=5).questions if q.id == "q7")
    assert len(q7.message) > 160 and "..." not in q7.message
    assert " ".join(q7.message.split()) in " ".join(out.split())  # every word, in order, wrapped
    assert max(len(line) for line in out.splitlines()) <= 100
    assert "a slow cell, or an endless loop" in out


# --- grading from inside the notebook (Colab, Jupyter) -----------------------------------------

def test_grade_this_notebook_in_colab_gives_the_command_lines_scores(root, tmp_path, monkeypatch, capsys):
    """In Colab the notebook is not a file: its content comes from the front end, as a dict."""
    import json
    import sys
    import types

    from utils.grade import grade_notebook, grade_this_notebook

    solution = root / "solutions" / "05_attention.ipynb"
    asked = []
    message = types.SimpleNamespace(blocking_request=lambda kind, **kw: asked.append(kind) or
                                    {"ipynb": json.loads(solution.read_text())})
    monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
    monkeypatch.setitem(sys.modules, "google.colab", types.SimpleNamespace(_message=message))
    monkeypatch.delenv("LLMCC_NO_FRONTEND", raising=False)
    monkeypatch.chdir(tmp_path)  # Colab's /content
    report = grade_this_notebook()
    assert asked == ["get_ipynb"]
    out = capsys.readouterr().out
    assert f"score: {report.score}/{report.max_score}" in out and report.score == report.max_score
    assert list(tmp_path.iterdir()) == []  # the temporary copy is gone
    reference = grade_notebook(solution)
    assert [(q.id, q.points) for q in report.questions] == [(q.id, q.points) for q in reference.questions]


def test_grade_this_notebook_in_jupyter_uses_the_sessions_file(root, tmp_path, monkeypatch, capsys):
    import shutil

    from utils.grade import grade_this_notebook

    exercise = tmp_path / "mine.ipynb"
    shutil.copy(root / "exercises" / "05_attention.ipynb", exercise)  # blank: scores 0
    monkeypatch.setenv("JPY_SESSION_NAME", str(exercise))
    monkeypatch.delenv("LLMCC_NO_FRONTEND", raising=False)
    report = grade_this_notebook()
    assert report.score == 0 and report.max_score > 0
    assert f"grading the saved file {exercise}" in capsys.readouterr().out


def test_grade_this_notebook_does_nothing_inside_a_grading_and_asks_for_a_path(monkeypatch, tmp_path):
    from utils.grade import grade_this_notebook

    monkeypatch.setenv("LLMCC_NO_FRONTEND", "1")
    assert grade_this_notebook() is None
    monkeypatch.delenv("LLMCC_NO_FRONTEND")
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    with pytest.raises(ValueError, match="pass its path"):
        grade_this_notebook()
