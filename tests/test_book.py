"""The book builds with warnings as errors and shows the verified outputs with Colab buttons."""

import shutil
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


def test_build_reads_only_the_books_own_files(root, tmp_path):
    """A virtual environment inside the repository (as the README suggests) must not become pages.

    A minimal book with the course's _config.yml, next to folders that hold what broke the build
    once: a huggingface_hub README with a Jinja template, which Sphinx cannot parse.
    """
    shutil.copy(root / "_config.yml", tmp_path / "_config.yml")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    (tmp_path / "intro.md").write_text("# A book\n\nOnly this page.\n")
    trap = "# {{ card_data }}\n\n```{not-a-directive}\n```\n"
    for env in (".venv/lib/python3.11/site-packages/pkg", "venv/lib/python3.12/site-packages/pkg",
                "myenv/lib/python3.13/site-packages/pkg", "_build/old", "utils/data"):
        (tmp_path / env).mkdir(parents=True)
        (tmp_path / env / "README.md").write_text(trap)
    result = subprocess.run([*JUPYTER_BOOK, "build", "--all", "--warningiserror", "--nitpick", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    pages = sorted(p.relative_to(tmp_path / "_build" / "html").as_posix()
                   for p in (tmp_path / "_build" / "html").rglob("*.html"))
    assert [p for p in pages if "README" in p or "site-packages" in p] == [], pages


def test_links_to_the_published_book_name_real_pages_and_anchors(html, root):
    """Notebooks link to other pages through the published book's address (they also work in Colab).

    Every such link, in every notebook and page, must name a page of this build and, after '#',
    an id on that page (a heading anchor, for instance).
    """
    import re

    import nbformat
    import yaml

    base = yaml.safe_load((root / "_config.yml").read_text())["html"]["baseurl"].rstrip("/") + "/"
    sources = {p: "\n".join(c.source for c in nbformat.read(p, as_version=4).cells if c.cell_type == "markdown")
               for folder in ("chapters", "exercises", "solutions") for p in sorted((root / folder).glob("*.ipynb"))}
    sources.update({p: p.read_text() for p in [root / "README.md", *sorted((root / "chapters").glob("*.md"))]})
    broken, checked = [], 0
    for path, text in sources.items():
        for target in re.findall(re.escape(base) + r"([^)\s>\"']+)", text):
            page, _, anchor = target.partition("#")
            built = html / page
            checked += 1
            if not built.is_file():
                broken.append(f"{path.name}: {target} (no such page)")
            elif anchor and f'id="{anchor}"' not in built.read_text():
                broken.append(f"{path.name}: {target} (no such anchor)")
    assert broken == [], broken
    assert checked > 0


def test_every_link_in_the_built_book_resolves_offline(html, capsys):
    """Internal links: the file and the anchor exist. External links: well formed (not fetched;
    the build machine may be offline), listed by host in the test's output for a human to skim."""
    import collections
    import re
    from urllib.parse import unquote, urlsplit

    hrefs = re.compile(r'<a [^>]*href="([^"]+)"')
    ids_cache: dict = {}
    broken, external = [], collections.Counter()
    for page in sorted(html.rglob("*.html")):
        if "_static" in page.parts or "_sources" in page.parts:
            continue
        for href in hrefs.findall(page.read_text(errors="replace")):
            parts = urlsplit(href)
            if parts.scheme in ("http", "https"):
                if not parts.netloc or " " in href or "localhost" in parts.netloc:
                    broken.append(f"{page.relative_to(html)}: malformed external link {href}")
                external[parts.netloc] += 1
                continue
            if parts.scheme in ("mailto", "javascript") or href.startswith("#") and not parts.fragment:
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if not target.exists():
                broken.append(f"{page.relative_to(html)}: {href} (no such file)")
            elif parts.fragment and target.suffix == ".html":
                ids = ids_cache.setdefault(target, set(re.findall(r'id="([^"]+)"', target.read_text(errors="replace"))))
                if unquote(parts.fragment) not in ids:
                    broken.append(f"{page.relative_to(html)}: {href} (no such anchor)")
    with capsys.disabled():
        print(f"\nexternal links by host (not fetched): {dict(external.most_common())}")
    assert broken == [], broken[:20]
