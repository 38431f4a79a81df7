"""Keep the notebooks in sync with their single sources.

    python -m utils.notebook_tools sync      # regenerate exercises/ and every setup cell
    python -m utils.notebook_tools check     # exit 1 if anything differs from a fresh generation
    python -m utils.notebook_tools execute chapters/01_next_token_loop.ipynb   # store fresh outputs
    python -m utils.notebook_tools claims chapters/10_rlhf_dpo.ipynb --seed 2  # its asserts, another seed

Two things are generated rather than edited by hand:

1. **Exercise notebooks.** ``solutions/NN_*.ipynb`` is the master. Solution code sits between
   ``### BEGIN SOLUTION`` and ``### END SOLUTION`` (nbgrader's convention). In the exercise, a
   block inside a function becomes ``raise NotImplementedError(...)``; a block at the top level
   (short answers such as ``p = 3 / 8``) becomes ``p = ...``, so "Run all" still reaches every
   check. Cells tagged ``solution-only`` are dropped, outputs are cleared.
2. **The first cell of every notebook**, hidden on the site (tag ``remove-cell``): where the
   package is missing (Colab) it installs exactly the course version the notebook belongs to
   (``utils.__version__`` when ``sync`` ran), from the package index or else the tagged archive
   of the repository named in ``_config.yml`` (the one place the URL lives); where the package
   is installed, it only checks that ``import utils`` finds it.
"""

from __future__ import annotations

import argparse
import ast
import copy
import os
import re
import sys
from pathlib import Path

__all__ = ["make_exercise", "setup_cell_source", "course_version", "repository_url", "sync", "execute",
           "with_seed", "has_seed", "run_claims", "main"]

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
SETUP_TAG = "remove-cell"
SOLUTION_ONLY_TAG = "solution-only"
NOTEBOOK_DIRS = ("chapters", "solutions")


def repository_url(root: Path) -> tuple[str, str]:
    """(url, branch) of the course repository, from ``_config.yml``."""
    import yaml

    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))
    repo = config.get("repository", {})
    if not repo.get("url"):
        raise ValueError(f"{root / '_config.yml'} has no repository.url")
    return repo["url"], repo.get("branch", "main")


DISTRIBUTION = "llm-core-concepts"  # the name on the package index; the import name is `utils`

SETUP_TEMPLATE = """\
# Setup (hidden in the book): the course package `utils`, at the version this notebook was written for.
# Where it is missing (Colab, a fresh Jupyter) this cell installs it; where it is installed it only checks.
def _course_setup(course="{distribution}", version="{version}"):
    import importlib, importlib.metadata, os, subprocess, sys, time

    sources = os.environ.get("LLMCC_INSTALL_FROM", "").split() or [
        f"{{course}}=={{version}}", f"{url}/archive/refs/tags/v{{version}}.tar.gz"]
    try:
        installed = importlib.metadata.version(course)
    except importlib.metadata.PackageNotFoundError:
        installed = None
    if installed is None or (installed != version and "google.colab" in sys.modules):
        start, errors = time.monotonic(), []
        for source in sources:
            pip = subprocess.run([sys.executable, "-m", "pip", "install", "-q", source], capture_output=True, text=True)
            if pip.returncode == 0:
                print(f"installed {{course}} {{version}} from {{source}} in {{time.monotonic() - start:.0f}} s")
                break
            lines = pip.stderr.strip().splitlines() or ["no message"]
            errors.append(next((line for line in reversed(lines) if line.startswith("ERROR")), lines[-1]))
        else:
            raise RuntimeError(
                f"Could not install the course package {{course}} {{version}}: no internet connection, or neither "
                "the package index nor GitHub could be reached. Connect (in Colab: Runtime > Connect) and run "
                f"this cell again. pip said: {{errors[-1]}}")
        importlib.invalidate_caches()
    elif installed != version:
        print(f"note: this notebook was written for {{course}} {{version}}; you have {{installed}} installed, "
              "so some outputs may differ from the book's.")
    import utils

    if getattr(utils, "__distribution__", None) != course:
        where = getattr(utils, "__file__", None) or "a folder"
        raise RuntimeError(
            f"Another module named utils ({{where}}) hides the course package. Rename or delete it, restart "
            "the kernel (in Colab: Runtime > Restart session) and run this cell again.")


_course_setup()\
"""


def setup_cell_source(url: str, version: str) -> str:
    """The first cell of every notebook: install the course package at ``version`` where it is missing.

    It tries the package index first, then the tagged source archive on GitHub; the environment
    variable ``LLMCC_INSTALL_FROM`` (space-separated pip requirements or paths) replaces both, which
    is how the tests install a locally built wheel offline. It stops with one plain sentence when
    nothing can be installed or when another module named ``utils`` hides the package.
    """
    return SETUP_TEMPLATE.format(distribution=DISTRIBUTION, version=version, url=url.rstrip("/"))


def course_version(root: Path) -> str:
    """The course's version, from ``utils/__init__.py`` of the repository at ``root``."""
    match = re.search(r'^__version__ = "([^"]+)"', (root / "utils" / "__init__.py").read_text(encoding="utf-8"), re.M)
    if not match:
        raise ValueError(f"{root / 'utils' / '__init__.py'} has no __version__")
    return match.group(1)


def _stub_block(block: list[str], indent: str) -> list[str]:
    """The exercise's replacement for one solution block."""
    if indent:  # inside a function body
        return [f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError(\"replace this line with your code\")"]
    try:
        tree = ast.parse("\n".join(block))
    except SyntaxError as e:
        raise ValueError(f"a top-level solution block is not valid Python: {e}") from None
    targets = []
    for node in tree.body:
        for t in node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []:
            # `a, b = 1, 2` becomes two answers, since `a, b = ...` could not run
            targets += [ast.unparse(e) for e in t.elts] if isinstance(t, (ast.Tuple, ast.List)) else [ast.unparse(t)]
    if not targets:
        return ["# YOUR CODE HERE", "raise NotImplementedError(\"replace this line with your code\")"]
    return [f"{t} = ...  # YOUR ANSWER HERE" for t in targets]


def strip_solutions(source: str) -> str:
    """Replace every BEGIN/END SOLUTION block of a cell's source by its stub.

    Example: "def f(x):\\n    ### BEGIN SOLUTION\\n    return 2 * x\\n    ### END SOLUTION"
    -> "def f(x):\\n    # YOUR CODE HERE\\n    raise NotImplementedError(...)"
    """
    out: list[str] = []
    block: list[str] | None = None
    indent = ""
    for line in source.split("\n"):
        stripped = line.strip()
        if stripped == BEGIN:
            if block is not None:
                raise ValueError(f"nested {BEGIN!r}")
            block, indent = [], line[: len(line) - len(line.lstrip())]
        elif stripped == END:
            if block is None:
                raise ValueError(f"{END!r} without {BEGIN!r}")
            out.extend(_stub_block([b[len(indent):] for b in block], indent))
            block = None
        elif block is not None:
            block.append(line)
        else:
            out.append(line)
    if block is not None:
        raise ValueError(f"{BEGIN!r} without {END!r}")
    return "\n".join(out)


def make_exercise(solution):
    """Return the exercise notebook generated from a solution notebook (which is not changed)."""
    nb = copy.deepcopy(solution)
    cells = []
    for cell in nb.cells:
        if SOLUTION_ONLY_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        if cell.cell_type == "code":
            cell.source = strip_solutions(cell.source)
            cell.outputs = []
            cell.execution_count = None
        cells.append(cell)
    nb.cells = cells
    return nb


def _set_setup_cell(nb, source: str) -> bool:
    """Make the notebook's first cell the setup cell. Returns True if it changed."""
    first = nb.cells[0] if nb.cells else None
    if first is not None and first.cell_type == "code" and SETUP_TAG in first.get("metadata", {}).get("tags", []):
        changed = first.source != source
        first.source = source
        return changed
    import nbformat

    nb.cells.insert(0, nbformat.v4.new_code_cell(source, metadata={"tags": [SETUP_TAG]}))
    return True


def _canonical(nb) -> str:
    import nbformat

    return nbformat.writes(nb)  # the exercise keeps the solution's cell ids, so this is deterministic


def sync(root: Path, write: bool) -> list[str]:
    """Regenerate setup cells and exercises. Returns a list of what differs (written if ``write``)."""
    import nbformat

    url, _ = repository_url(root)
    setup = setup_cell_source(url, course_version(root))
    differences = []
    for folder in NOTEBOOK_DIRS:
        for path in sorted((root / folder).glob("*.ipynb")):
            nb = nbformat.read(path, as_version=4)
            if _set_setup_cell(nb, setup):
                differences.append(f"{path.relative_to(root)}: setup cell is out of date")
                if write:
                    nbformat.write(nb, path)
    for path in sorted((root / "solutions").glob("*.ipynb")):
        exercise = make_exercise(nbformat.read(path, as_version=4))
        target = root / "exercises" / path.name
        current = nbformat.read(target, as_version=4) if target.exists() else None
        if current is None or _canonical(current) != _canonical(exercise):
            differences.append(f"{target.relative_to(root)}: differs from the one generated from {path.relative_to(root)}")
            if write:
                nbformat.write(exercise, target)
    orphans = sorted(p.name for p in (root / "exercises").glob("*.ipynb")) if (root / "exercises").exists() else []
    for name in orphans:
        if not (root / "solutions" / name).exists():
            differences.append(f"exercises/{name}: has no master in solutions/")
    return differences


def _coalesce_streams(outputs: list) -> list:
    merged: list = []
    for out in outputs:
        if (out.get("output_type") == "stream" and merged and merged[-1].get("output_type") == "stream"
                and merged[-1].get("name") == out.get("name")):
            merged[-1]["text"] += out["text"]
        else:
            merged.append(out)
    return merged


_BAR = re.compile(r"\d+%\|")


def _is_progress_bar(output) -> bool:
    data = output.get("data", {})
    return "application/vnd.jupyter.widget-view+json" in data and bool(_BAR.search("".join(data.get("text/plain", ""))))


def execute(path: Path, timeout: int = 600) -> None:
    """Run a notebook top to bottom in a kernel of this environment and store its outputs in place.

    Stops at the first error (a chapter must run clean); timings are not recorded, so a re-run
    that computes the same numbers leaves the file unchanged. Nothing pins the CPU's kernels:
    what a cell stores must come out the same whichever kernels and thread count a machine
    uses, which `python scripts/course.py matrix` checks.
    """
    import nbformat
    from nbclient import NotebookClient

    from .grade import NO_FRONTEND, _kernel_manager

    os.environ.update(NO_FRONTEND)  # inherited by the kernel started below
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, record_timing=False, km=_kernel_manager(),
                   resources={"metadata": {"path": str(path.resolve().parent)}}).execute()
    # Widget state only matters in a live kernel; the book shows static figures instead.
    nb.metadata.pop("widgets", None)
    for i, cell in enumerate(nb.cells):  # one stream output per name, however the kernel happened to flush
        if cell.cell_type == "code":
            # A tqdm bar drawn as a widget is stored frozen at "0%": readers get a live one when they run.
            cell.outputs = [out for out in _coalesce_streams(cell.outputs) if not _is_progress_bar(out)]
            for j, out in enumerate(cell.outputs):  # widget ids are random; fix them so diffs stay quiet
                view = out.get("data", {}).get("application/vnd.jupyter.widget-view+json")
                if view:
                    view["model_id"] = f"cell{i}-output{j}"
    nbformat.write(nb, path)


SEED_LINE = re.compile(r"^SEED = \d+\b", re.M)


def with_seed(nb, seed: int):
    """A copy of the notebook whose ``SEED = 0`` line (one, in a code cell) sets ``SEED = seed``.

    Chapters that train or sample define ``SEED`` once and pass it to every run whose outcome the
    prose interprets; the claims those runs support are ``assert``-ed in the cells. Running the
    notebook with other seeds (``python scripts/course.py claims``) checks that the text holds
    for a reader's fresh run, not only for the stored one.
    """
    nb = copy.deepcopy(nb)
    hits = [c for c in nb.cells if c.cell_type == "code" and SEED_LINE.search(c.source)]
    if len(hits) != 1 or len(SEED_LINE.findall(hits[0].source)) != 1:
        raise ValueError(f"the notebook must set SEED in exactly one line of one code cell, found {len(hits)} cells")
    hits[0].source = SEED_LINE.sub(f"SEED = {seed}", hits[0].source)
    return nb


def has_seed(path: Path) -> bool:
    """Does the notebook at ``path`` set ``SEED`` in a code cell (so ``claims`` can vary it)?"""
    import nbformat

    return any(c.cell_type == "code" and SEED_LINE.search(c.source) for c in nbformat.read(path, as_version=4).cells)


def run_claims(path: Path, seed: int, timeout: int = 900) -> float:
    """Execute ``path`` with ``SEED = seed`` in memory (the file is not changed); return the seconds taken.

    Raises nbclient's ``CellExecutionError`` (with the failing cell) if an assertion or anything
    else fails. The kernel inherits this process's environment, e.g. ``LLMCC_AUTOCAST=bf16``.
    """
    import time

    import nbformat
    from nbclient import NotebookClient

    from .grade import NO_FRONTEND, _kernel_manager

    os.environ.update(NO_FRONTEND)
    nb = with_seed(nbformat.read(path, as_version=4), seed)
    start = time.monotonic()
    NotebookClient(nb, timeout=timeout, record_timing=False, km=_kernel_manager(),
                   resources={"metadata": {"path": str(path.resolve().parent)}}).execute()
    return time.monotonic() - start


def _find_root(start: Path) -> Path:
    for folder in (start, *start.parents):
        if (folder / "_config.yml").exists() and (folder / "solutions").is_dir():
            return folder
    raise SystemExit(f"error: no course repository (a folder with _config.yml and solutions/) at or above {start}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.notebook_tools", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["sync", "check", "execute", "claims"])
    parser.add_argument("notebooks", nargs="*", type=Path, help="with execute or claims: the notebooks to run")
    parser.add_argument("--seed", type=int, default=1, help="with claims: the value given to SEED")
    parser.add_argument("--root", type=Path, default=None, help="the repository (default: found from here)")
    args = parser.parse_args(argv)
    if args.command == "execute":
        for path in args.notebooks:
            print(f"executing {path}")
            execute(path)
        return 0
    if args.command == "claims":
        failed = 0
        for path in args.notebooks:
            try:
                seconds = run_claims(path, args.seed)
            except Exception as error:  # CellExecutionError names the cell and the failed assertion
                failed += 1
                print(f"FAIL {path} with SEED = {args.seed}:\n{str(error)[-2500:]}", flush=True)
            else:
                print(f"pass {path} with SEED = {args.seed} ({seconds:.0f} s)", flush=True)
        return 1 if failed else 0
    root = args.root or _find_root(Path.cwd())
    differences = sync(root, write=args.command == "sync")
    for d in differences:
        print(("updated " if args.command == "sync" else "") + d)
    if args.command == "check" and differences:
        print("run `python -m utils.notebook_tools sync` and commit the result", file=sys.stderr)
        return 1
    if not differences:
        print("notebooks are in sync")
    return 0


if __name__ == "__main__":
    sys.exit(main())
