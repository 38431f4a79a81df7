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


@pytest.mark.parametrize("name", SOLUTIONS)
def test_solution_scores_full_marks(root, name):
    report = grade_notebook(root / "solutions" / name)
    assert report.max_score > 0
    assert report.score == report.max_score, [q for q in report.questions if q.points < q.max_points]
    assert report.cell_problems == []


@pytest.mark.parametrize("name", SOLUTIONS)
def test_blank_exercise_scores_zero_without_crashing(root, name):
    report = grade_notebook(root / "exercises" / name)
    assert report.score == 0 and report.max_score > 0
    assert report.cell_problems == []  # "Run all" on a fresh exercise reaches every check
    assert all(("not implemented" in q.message or "not answered" in q.message) for q in report.questions)


def _notebook(tmp_path, cells):
    nb = nbformat.v4.new_notebook()
    nb.metadata["llmcc"] = {"checks": "utils.checks.ch01"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    path = tmp_path / "learner.ipynb"
    nbformat.write(nb, path)
    return path


GOOD_SOFTMAX = "def softmax(x):\n    x = np.asarray(x, float)\n    e = np.exp(x - x.max(-1, keepdims=True))\n    return e / e.sum(-1, keepdims=True)"


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
        "check.cross_entropy(lambda z, t: float(-(np.asarray(z) - np.asarray(z).max() - np.log(np.exp(np.asarray(z) - np.asarray(z).max()).sum()))[t]))",
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
