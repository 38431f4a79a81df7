"""What a reader sees fits the page: chapter openings, figure captions and alt text, line widths.

The book's code column holds about 88 characters; a longer code line or printed line is cut off
or scrolls. Test plumbing (`# noqa`, widget progress bars frozen at "0%") is not for readers.
"""

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent

WIDTH = 88
CHAPTERS = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
READER_NOTEBOOKS = CHAPTERS + sorted((ROOT / "solutions").glob("*.ipynb")) + sorted((ROOT / "exercises").glob("*.ipynb"))
BAR = re.compile(r"\d+%\|")


def _shown_code_cells(path):
    for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
        if cell.cell_type == "code" and "remove-cell" not in cell.metadata.get("tags", []):
            yield i, cell


def _text(output) -> str:
    text = output.get("text", "")
    plain = output.get("data", {}).get("text/plain", "")
    return "".join(text) + "".join(plain)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_opens_with_goals_prerequisites_and_time(path):
    """The first text cell says what the reader will be able to do, what it needs, and how long."""
    first = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown")
    for field in ("**You will be able to**", "**You need**", "**Time**"):
        assert field in first.source, f"{path.name}: the opening lacks {field}"
    assert re.search(r"\*\*Time\*\*[^\n]*\d+ minutes", first.source), f"{path.name}: **Time** names no minutes"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_figure_has_a_caption_and_alt_text(path):
    """myst-nb reads `mystnb.figure.caption` and `mystnb.image.alt` from the cell's metadata."""
    problems = []
    for i, cell in _shown_code_cells(path):
        if any("image/png" in o.get("data", {}) for o in cell.outputs):
            options = cell.metadata.get("mystnb", {})
            caption = options.get("figure", {}).get("caption", "")
            alt = options.get("image", {}).get("alt", "")
            if len(caption) < 20 or len(alt) < 20:
                problems.append(f"cell {i}: caption {caption!r}, alt {alt!r}")
    assert problems == [], f"{path.name}: figures without caption or alt text: {problems}"


@pytest.mark.parametrize("path", READER_NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_code_and_printed_lines_fit_the_code_column(path):
    problems = []
    for i, cell in _shown_code_cells(path):
        problems += [f"cell {i} code: {line[:60]}..." for line in cell.source.splitlines() if len(line) > WIDTH]
        if "remove-output" in cell.metadata.get("tags", []):
            continue
        for output in cell.outputs:
            shown = output.get("output_type") in ("stream", "execute_result", "display_data")
            if shown and "image/png" not in output.get("data", {}):
                problems += [f"cell {i} output: {line[:60]}..." for line in _text(output).splitlines() if len(line) > WIDTH]
    assert problems == [], f"{path.name}: {len(problems)} line(s) over {WIDTH} characters: {problems[:8]}"


@pytest.mark.parametrize("path", READER_NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_no_test_plumbing_or_frozen_progress_bars(path):
    problems = []
    for i, cell in _shown_code_cells(path):
        if re.search(r"#\s*noqa|NBVAL", cell.source):
            problems.append(f"cell {i}: a linter or nbval comment in the code")
        problems += [f"cell {i}: stored progress bar" for o in cell.outputs if BAR.search(_text(o))]
    assert problems == [], f"{path.name}: {problems}"
