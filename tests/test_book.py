"""The book builds with warnings as errors and shows the verified outputs with Colab buttons."""

import subprocess
import sys
from pathlib import Path

import pytest

from utils.notebook_tools import repository_url

# This Python's jupyter-book, whether or not its virtual environment is activated.
JUPYTER_BOOK = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()"]


@pytest.fixture(scope="module")
def html(root, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("book")
    result = subprocess.run([*JUPYTER_BOOK, "build", "--all", "--warningiserror", "--nitpick", "--keep-going",
                             "--path-output", str(out), str(root)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out / "_build" / "html"


def test_index_and_every_notebook_page_exist(html, root):
    assert (html / "index.html").exists()
    for folder in ("chapters", "exercises"):
        for nb in (root / folder).glob("*.ipynb"):
            assert (html / folder / f"{nb.stem}.html").exists(), nb


def test_chapter_page_has_outputs_figures_and_colab_link(html, root):
    page = (html / "chapters" / "01_next_token_loop.html").read_text()
    url, branch = repository_url(root)
    colab = f"https://colab.research.google.com/github/{url.removeprefix('https://github.com/')}/blob/{branch}/chapters/01_next_token_loop.ipynb"
    assert colab in page
    assert "capital     logit  4.0  probability 0.858" in page  # a stored output, as nbval verified it
    assert page.count("<img") >= 2  # the temperature plot and the static explorer grid
    assert "Setup for Google Colab" not in page  # the setup cell is hidden
    assert "FloatLogSlider" not in page  # the live widget's output is removed; the static figure stands in


def test_exercise_page_has_no_solutions(html):
    page = (html / "exercises" / "01_next_token_loop.html").read_text()
    assert "NotImplementedError" in page and "BEGIN SOLUTION" not in page
