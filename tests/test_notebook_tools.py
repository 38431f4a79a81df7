"""One source for exercises and setup cells; the repository's notebooks are consistent."""

import json
import re

import nbformat
import pytest
import yaml

from utils.notebook_tools import course_version, make_exercise, repository_url, setup_cell_source, strip_solutions, sync


def test_function_block_becomes_not_implemented():
    src = "def f(x):\n    y = 1\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n"
    out = strip_solutions(src)
    assert "return 2 * x" not in out and "y = 1" in out
    assert "    raise NotImplementedError" in out
    exec(compile(out, "<exercise>", "exec"), ns := {})
    with pytest.raises(NotImplementedError):
        ns["f"](1)


def test_top_level_block_becomes_ellipsis_answers():
    out = strip_solutions("a = 1\n### BEGIN SOLUTION\nb = 3 / 8\nc, d = 1, 2\n### END SOLUTION\nprint(a)")
    exec(compile(out, "<exercise>", "exec"), ns := {})  # "Run all" must not stop here
    assert ns["b"] is Ellipsis and ns["c"] is Ellipsis and ns["a"] == 1
    assert "b = ...  # YOUR ANSWER HERE" in out and "d = ...  # YOUR ANSWER HERE" in out


@pytest.mark.parametrize("src,message", [
    ("### BEGIN SOLUTION\nx = 1\n", "without"),
    ("x = 1\n### END SOLUTION\n", "without"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "nested"),
])
def test_malformed_markers_are_errors(src, message):
    with pytest.raises(ValueError, match=message):
        strip_solutions(src)


def test_solution_only_cells_and_outputs_are_dropped():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("spoiler", metadata={"tags": ["solution-only"]}),
                nbformat.v4.new_code_cell("### BEGIN SOLUTION\nx = 2\n### END SOLUTION", outputs=[
                    nbformat.v4.new_output("stream", text="2")], execution_count=3)]
    ex = make_exercise(nb)
    assert len(ex.cells) == 1 and ex.cells[0].outputs == [] and ex.cells[0].execution_count is None
    assert len(nb.cells) == 2  # the master is untouched


def test_committed_exercises_and_setup_cells_are_in_sync(root):
    assert sync(root, write=False) == []


def test_every_notebook_starts_with_the_hidden_setup_cell(root):
    url, _ = repository_url(root)
    expected = setup_cell_source(url, course_version(root))
    for path in sorted(root.glob("*/[0-9][0-9]_*.ipynb")):
        first = nbformat.read(path, as_version=4).cells[0]
        assert first.cell_type == "code" and "remove-cell" in first.metadata.get("tags", []), path
        assert first.source == expected, path


def test_setup_cell_is_a_no_op_when_installed(capsys):
    import utils

    src = setup_cell_source("https://example.invalid/repo", utils.__version__)
    exec(compile(src, "<setup>", "exec"), namespace := {})  # would try pip (and fail) if utils were missing
    assert capsys.readouterr().out == ""
    assert set(namespace) <= {"__builtins__", "_course_setup"}  # nothing else leaks into the notebook


def test_toc_lists_exactly_the_chapter_and_exercise_notebooks(root):
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = {c["file"] for part in toc["parts"] for c in part["chapters"]}
    on_disk = {p.relative_to(root).with_suffix("").as_posix()
               for folder in ("chapters", "exercises") for p in (root / folder).glob("*.ipynb")}
    on_disk |= {p.relative_to(root).with_suffix("").as_posix() for p in (root / "chapters").glob("*.md")}  # closing page
    assert files == on_disk
    assert {p.name for p in (root / "exercises").glob("*.ipynb")} == {p.name for p in (root / "solutions").glob("*.ipynb")}
    assert {p.name for p in (root / "chapters").glob("*.ipynb")} == {p.name for p in (root / "solutions").glob("*.ipynb")}


def test_stored_outputs_are_clean(root):
    home = re.compile(r"/(?:root|home/[\w.-]+|Users/[\w.-]+)/")
    for path in sorted(root.glob("chapters/*.ipynb")) + sorted(root.glob("solutions/*.ipynb")):
        nb = json.loads(path.read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        assert any(c["outputs"] for c in code), f"{path}: no stored outputs for nbval to compare"
        assert "widgets" not in nb["metadata"], f"{path}: stored widget state"
        for c in code:
            assert "execution" not in c["metadata"], f"{path}: timings recorded"
            for o in c["outputs"]:
                assert o["output_type"] != "error", f"{path}: stored error {o.get('ename')}"
                text = "".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", ""))
                assert not home.search(text), f"{path}: home directory in output"


def test_repository_url_appears_only_as_in_config(root):
    url, _ = repository_url(root)
    owner, repo = url.removeprefix("https://github.com/").split("/")[:2]
    for path in [root / "README.md", *root.glob("*/*.ipynb")]:
        for found_owner, found_repo in re.findall(r"github\.com/([\w.-]+)/([\w.-]+)", path.read_text()):
            if found_owner == owner or found_repo == repo:  # a link to this course (others are citations)
                assert (found_owner, found_repo) == (owner, repo), f"{path} links to {found_owner}/{found_repo}"


def test_exercise_intros_state_the_real_number_of_questions_and_points(root):
    """The intro's "There are N questions and M points" is typed by hand; the registry is the truth."""
    import importlib

    from utils.checks import questions_of

    for path in sorted((root / "solutions").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        questions = questions_of(importlib.import_module(nb.metadata["llmcc"]["checks"]))
        intro = nb.cells[1].source
        match = re.search(r"There are (\d+) questions and (\d+) points", intro.replace("\n#", "").replace("\n", " "))
        assert match, f"{path}: intro does not state the number of questions and points"
        assert (int(match.group(1)), int(match.group(2))) == (len(questions), sum(q.points for q in questions)), path
        headings = re.findall(r"## Question (\d+) \((\d+) points?\)", "\n".join(c.source for c in nb.cells))
        assert [(int(n), int(p)) for n, p in headings] == [(i + 1, q.points) for i, q in enumerate(questions)], path


# --- stored outputs that hold on every machine ------------------------------------------------

def _code_cells(root):
    for folder in ("chapters", "solutions"):
        for path in sorted((root / folder).glob("*.ipynb")):
            for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
                if cell.cell_type == "code":
                    yield path.relative_to(root).as_posix(), i, cell


def test_every_unchecked_output_has_an_assert_instead(root):
    """nbval skips a cell tagged nbval-ignore-output; such a cell must check its claim itself.

    The tag (not the NBVAL_IGNORE_OUTPUT comment, which readers would see) marks outputs that
    come from training or sampling and so differ between machines and seeds.
    """
    problems = []
    for name, i, cell in _code_cells(root):
        if re.search(r"NBVAL", cell.source):
            problems.append(f"{name} cell {i}: use the cell tag nbval-ignore-output, not a comment")
        if "nbval-ignore-output" in cell.metadata.get("tags", []) and not re.search(r"^\s*assert\b", cell.source, re.M):
            problems.append(f"{name} cell {i}: output not compared by nbval and no assert checks its claim")
    assert problems == []


def test_seed_parameter_can_be_changed(root):
    from utils.notebook_tools import has_seed, with_seed

    seeded = [p for folder in ("chapters", "solutions") for p in sorted((root / folder).glob("*.ipynb")) if has_seed(p)]
    assert len(seeded) >= 8  # chapters 5-10, 12, 13 train or sample
    for path in seeded:
        nb = with_seed(nbformat.read(path, as_version=4), 7)
        assert sum(len(re.findall(r"^SEED = 7\b", c.source, re.M)) for c in nb.cells if c.cell_type == "code") == 1
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    with pytest.raises(ValueError, match="exactly one"):
        with_seed(nb, 1)
    nb.cells.append(nbformat.v4.new_code_cell("SEED = 0\nSEED = 0"))
    with pytest.raises(ValueError, match="exactly one"):
        with_seed(nb, 1)
