"""Notebook markdown reads the same in Jupyter, Colab and the book.

Jupyter and Colab render plain Markdown with $math$; the book (MyST) understands more. Anything
only MyST understands shows up as raw text in a notebook, and a relative link breaks in Colab,
which opens one notebook on its own. So notebook markdown may use neither.
"""

import re

import nbformat
import pytest

MYST_ONLY = [
    (re.compile(r"^\([\w.:-]+\)=\s*$", re.M), "a MyST label line such as (name)="),
    (re.compile(r"\{(ref|doc|numref|eq|cite|term|download|abbr|sub|sup|math)\}`"), "a MyST role such as {ref}`...`"),
    (re.compile(r"^\s*(```|~~~)\s*\{", re.M), "a MyST directive fence such as ```{note}"),
    (re.compile(r"^\s*:::", re.M), "a MyST colon fence :::"),
    (re.compile(r"\$\$\s*\([\w-]+\)\s*$", re.M), "a MyST equation label $$ (name)"),
    (re.compile(r"\[\^[^\]]+\]"), "a footnote [^name], which Jupyter does not render"),
    (re.compile(r"\{\{[^}]*\}\}"), "a MyST substitution {{ name }}"),
]
LINK = re.compile(r"\]\(\s*<?([^)\s>]+)")
LIST_START = re.compile(r"^\s{0,3}([-+*]|\d+[.)])\s")


def _without_code(text: str) -> str:
    text = re.sub(r"^(```|~~~).*?^\1", "", text, flags=re.M | re.S)  # fenced code
    return re.sub(r"`[^`\n]*`", "``", text)  # inline code


def problems_in(text: str) -> list[str]:
    """What in one markdown cell only the book (or nothing outside it) would render right."""
    found = [f"{what}: {m.group(0).strip()!r}" for pattern, what in MYST_ONLY
             for m in pattern.finditer(text if "fence" in what else _without_code(text))]
    prose = _without_code(text)
    for target in LINK.findall(prose):
        if not re.match(r"(https?://|mailto:|#)", target):
            found.append(f"a relative link {target!r}, which breaks in Colab (link to the book's page instead)")
    # An inline formula that wraps onto a line starting with "- " or "+ " becomes a list item in MyST.
    inline = re.sub(r"\$\$.*?\$\$", "", prose, flags=re.S)
    open_math = False
    for line in inline.split("\n"):
        if open_math and LIST_START.match(line):
            found.append(f"an inline formula continues on a line that starts a list: {line.strip()[:40]!r}")
        open_math ^= (len(re.findall(r"(?<!\\)\$", line)) % 2 == 1)
    return found


@pytest.mark.parametrize("text,expected", [
    ("(mc-x)=\n## Title", "label"),
    ("See {ref}`mc-x`.", "role"),
    ("```{note}\nhi\n```", "directive"),
    ("[next](../chapters/02_tokens.ipynb)", "relative link"),
    ("a formula $a\n- b$ wraps", "inline formula"),
    ("footnote[^1]", "footnote"),
])
def test_scanner_finds_each_kind(text, expected):
    assert any(expected in p for p in problems_in(text)), problems_in(text)


@pytest.mark.parametrize("text", [
    "Plain $x - y$ and $$a\n- b$$ display, `(x)=` in code, [a](https://x.org/a.html#b), [s](#sec)",
    "- a list item\n- another with $x$",
    "```python\n(label)=\n[a](../b)\n```",
])
def test_scanner_accepts_portable_markdown(text):
    assert problems_in(text) == []


def test_notebook_markdown_is_portable(root):
    problems = []
    for folder in ("chapters", "solutions", "exercises"):
        for path in sorted((root / folder).glob("*.ipynb")):
            for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
                if cell.cell_type == "markdown":
                    problems += [f"{folder}/{path.name} cell {i}: {p}" for p in problems_in(cell.source)]
    assert problems == [], "\n".join(problems[:40]) + (f"\n... {len(problems)} in all" if len(problems) > 40 else "")
