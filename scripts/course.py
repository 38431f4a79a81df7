"""Set up, build and test the course with nothing but Python 3.10+ and pip.

    python scripts/course.py setup   # install what the course needs into this Python environment
    python scripts/course.py book    # setup, then build the book into _build/html (warnings are errors)
    python scripts/course.py test    # setup, then run the whole test suite (CI runs exactly this)

Setup is idempotent and works offline once everything is installed: it only calls pip when a
requirement is missing or when the package `utils` is not installed from *this* folder.
"""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The CPU build, installed first so that pip does not pull a multi-GB CUDA build; a wide range in
# requirements.txt then accepts it (and Colab's preinstalled torch). Override with LLMCC_TORCH_SPEC.
TORCH_SPEC = os.environ.get("LLMCC_TORCH_SPEC", "torch==2.13.0")
# This Python's jupyter-book, whether or not its virtual environment is activated.
JUPYTER_BOOK = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()"]
PYTEST_WORKERS = os.environ.get("LLMCC_TEST_WORKERS", "2")


def run(cmd: list[str], **kwargs) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT, **kwargs)


def _requirements(path: Path) -> list[str]:
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            lines.append(line)
    return lines


def _missing(requirements: list[str]) -> list[str]:
    """Requirements that are not installed at a satisfying version."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # packaging comes with pip's usual companions; without it, install everything
        return requirements
    missing = []
    for spec in requirements:
        req = Requirement(spec)
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            missing.append(spec)
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            missing.append(spec)
    return missing


def _utils_is_ours() -> bool:
    """Does a fresh interpreter (as a notebook kernel would be) import `utils` from this folder?

    Asked in a subprocess: an editable install registers itself when Python starts, so this
    process cannot see one it has just made. The working folder is scripts/, which has no utils.
    """
    probe = subprocess.run([sys.executable, "-c", "import utils, pathlib; print(pathlib.Path(utils.__file__).resolve())"],
                           cwd=ROOT / "scripts", capture_output=True, text=True)
    return probe.returncode == 0 and Path(probe.stdout.strip()).parent == ROOT / "utils"


def setup() -> None:
    if sys.version_info < (3, 10):
        sys.exit(f"error: the course needs Python 3.10 or newer, this is {sys.version.split()[0]}")
    pip = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check"]
    if importlib.util.find_spec("torch") is None:
        run(pip + [TORCH_SPEC])
    needed = _requirements(ROOT / "requirements.txt") + _requirements(ROOT / "requirements-dev.txt")
    missing = _missing(needed)
    if missing or not _utils_is_ours():
        print(f"installing: {', '.join(missing) or 'the course package from this folder'}", flush=True)
        # Without build isolation, the editable install needs no download when setuptools is present.
        isolation = [] if _missing(["setuptools>=64"]) else ["--no-build-isolation"]
        run(pip + isolation + ["-e", ".", "-r", "requirements-dev.txt"])
        if not _utils_is_ours():
            sys.exit("error: `utils` still does not import from this folder; is another package named utils installed?")
    else:
        print("setup: everything is installed", flush=True)


def book() -> None:
    setup()
    shutil.rmtree(ROOT / "_build", ignore_errors=True)
    run([*JUPYTER_BOOK, "build", "--all", "--warningiserror", "--nitpick", "--keep-going", "."])
    index = ROOT / "_build" / "html" / "index.html"
    if not index.exists():
        sys.exit(f"error: the build finished but {index} is missing")
    print(f"book: open {index}")


def test() -> int:
    setup()
    run([sys.executable, "-m", "utils.notebook_tools", "check"])
    cmd = [sys.executable, "-m", "pytest", "-n", PYTEST_WORKERS, "--dist", "loadfile",
           "tests", "chapters", "solutions",
           "--nbval", "--nbval-current-env", "--nbval-sanitize-with", "tests/nbval_sanitize.cfg"]
    print("+", " ".join(cmd), flush=True)
    # Two workers each run PyTorch with 2 threads on a 2-core machine. OpenMP threads that spin
    # while they wait then steal each other's cores, and small-op notebooks (generation, chapters
    # 9-10) ran 3x slower; passive waiting removes that and gives bit-identical results.
    # The stored outputs were computed with PyTorch's AVX2 kernels; pin them on every x86-64 CPU.
    from utils.notebook_tools import reproducible_cpu_env

    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"), **reproducible_cpu_env()}
    return subprocess.run(cmd, cwd=ROOT, env=env).returncode


def main() -> int:
    commands = {"setup": setup, "book": book, "test": test}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        print(__doc__)
        return 2
    start = time.monotonic()
    code = commands[sys.argv[1]]() or 0
    print(f"{sys.argv[1]}: finished in {time.monotonic() - start:.0f} s with exit code {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
