"""Keep the notebooks in sync with their single sources.

    python -m utils.notebook_tools sync      # regenerate exercises/ and every setup cell
    python -m utils.notebook_tools check     # exit 1 if anything differs from a fresh generation
    python -m utils.notebook_tools execute chapters/01_next_token_loop.ipynb   # store fresh outputs

Two things are generated rather than edited by hand:

1. **Exercise notebooks.** ``solutions/NN_*.ipynb`` is the master. Solution code sits between
   ``### BEGIN SOLUTION`` and ``### END SOLUTION`` (nbgrader's convention). In the exercise, a
   block inside a function becomes ``raise NotImplementedError(...)``; a block at the top level
   (short answers such as ``p = 3 / 8``) becomes ``p = ...``, so "Run all" still reaches every
   check. Cells tagged ``solution-only`` are dropped, outputs are cleared.
2. **The first cell of every notebook**, hidden on the site (tag ``remove-cell``): in Colab it
   installs this package from the repository named in ``_config.yml`` (the one place the URL
   lives); locally, where the package is installed, it does nothing.
"""

from __future__ import annotations

import argparse
import ast
import copy
import os
import sys
from pathlib import Path

__all__ = ["make_exercise", "setup_cell_source", "repository_url", "sync", "reproducible_cpu_env", "main"]

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


def setup_cell_source(url: str, branch: str) -> str:
    return (
        "# Setup for Google Colab (hidden in the book): install the course package if it is missing.\n"
        "# Locally, `pip install -e .` has installed it and this cell does nothing.\n"
        "import sys\n"
        "try:\n"
        "    import utils.sampling  # noqa: F401\n"
        "except ImportError:\n"
        "    import subprocess\n"
        f"    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', 'git+{url}@{branch}'], check=True)\n"
        "if 'google.colab' in sys.modules:\n"
        "    from google.colab import output\n"
        "    output.enable_custom_widget_manager()  # for the ipywidgets explorers"
    )


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

    url, branch = repository_url(root)
    setup = setup_cell_source(url, branch)
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


def reproducible_cpu_env() -> dict[str, str]:
    """Environment variables that make PyTorch's CPU arithmetic the same on every x86-64 CPU.

    PyTorch picks its vectorised kernels, and MKL its matrix-multiply code, by the CPU's
    instruction set, and AVX-512 code rounds differently from AVX2 code: a chapter that trains a
    model stored 1.004 on one machine and computed 1.003 on another. Pinning both to AVX2, which
    every x86-64 CPU of the last decade has, makes the stored outputs reproducible everywhere
    (nbval in CI) at a small cost in speed. Values already set in the environment win; other
    architectures get nothing (no stored output comes from them).
    """
    import platform

    if platform.machine().lower() not in ("x86_64", "amd64"):
        return {}
    pinned = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}
    return {key: os.environ.get(key, value) for key, value in pinned.items()}


def execute(path: Path, timeout: int = 600) -> None:
    """Run a notebook top to bottom in a kernel of this environment and store its outputs in place.

    Stops at the first error (a chapter must run clean); timings are not recorded, so a re-run
    that computes the same numbers leaves the file unchanged. The kernel runs with
    ``reproducible_cpu_env()``, as the tests do.
    """
    import nbformat
    from nbclient import NotebookClient

    from .grade import _kernel_manager

    os.environ.update(reproducible_cpu_env())  # inherited by the kernel started below

    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, record_timing=False, km=_kernel_manager(),
                   resources={"metadata": {"path": str(path.resolve().parent)}}).execute()
    # Widget state only matters in a live kernel; the book shows static figures instead.
    nb.metadata.pop("widgets", None)
    for i, cell in enumerate(nb.cells):  # one stream output per name, however the kernel happened to flush
        if cell.cell_type == "code":
            cell.outputs = _coalesce_streams(cell.outputs)
            for j, out in enumerate(cell.outputs):  # widget ids are random; fix them so diffs stay quiet
                view = out.get("data", {}).get("application/vnd.jupyter.widget-view+json")
                if view:
                    view["model_id"] = f"cell{i}-output{j}"
    nbformat.write(nb, path)


def _find_root(start: Path) -> Path:
    for folder in (start, *start.parents):
        if (folder / "_config.yml").exists() and (folder / "solutions").is_dir():
            return folder
    raise SystemExit(f"error: no course repository (a folder with _config.yml and solutions/) at or above {start}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m utils.notebook_tools", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["sync", "check", "execute"])
    parser.add_argument("notebooks", nargs="*", type=Path, help="with execute: the notebooks to run")
    parser.add_argument("--root", type=Path, default=None, help="the repository (default: found from here)")
    args = parser.parse_args(argv)
    if args.command == "execute":
        for path in args.notebooks:
            print(f"executing {path}")
            execute(path)
        return 0
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
