"""Set up, build and test the course with nothing but Python 3.10+ and pip.

    python scripts/course.py setup   # install what the course needs into this Python environment
    python scripts/course.py book    # setup, then build the book into _build/html (warnings are errors)
    python scripts/course.py test    # setup, then run the whole test suite (CI runs exactly this)
    python scripts/course.py matrix  # setup, then the tests under every CPU kernel set x thread count
    python scripts/course.py claims  # setup, then the notebooks' asserts with other seeds and with bf16
    python scripts/course.py colab   # setup, then every notebook in Colab's own package versions
    python scripts/course.py doctor  # what to paste into an issue: Python, PyTorch, device, versions

Setup is idempotent and works offline once everything is installed: it only calls pip when a
requirement is missing or when the package `utils` is not installed from *this* folder. What
comes after the install (the build, the tests) runs in a fresh Python process, which sees every
package the install has just added; this process, started before the install, may not.
"""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
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
    """Does a fresh interpreter (as a notebook kernel would be) import `utils` from this folder,
    installed at this folder's version?

    Asked in a subprocess: an editable install registers itself when Python starts, so this
    process cannot see one it has just made. The working folder is scripts/, which has no utils.
    """
    probe = subprocess.run([sys.executable, "-c", "import importlib.metadata as m, pathlib, utils; "
                            "print(pathlib.Path(utils.__file__).resolve()); print(m.version('llm-core-concepts'))"],
                           cwd=ROOT / "scripts", capture_output=True, text=True)
    lines = probe.stdout.split()
    version = re.search(r'^__version__ = "([^"]+)"', (ROOT / "utils" / "__init__.py").read_text(encoding="utf-8"), re.M)
    return (probe.returncode == 0 and len(lines) == 2 and Path(lines[0]).parent == ROOT / "utils"
            and version is not None and lines[1] == version.group(1))


def _externally_managed() -> bool:
    """Is this the operating system's own Python, where pip refuses to install (PEP 668)?"""
    if sys.prefix != sys.base_prefix:  # a virtual environment
        return False
    return (Path(sysconfig.get_path("stdlib")) / "EXTERNALLY-MANAGED").exists()


def setup() -> None:
    if sys.version_info < (3, 10):  # noqa: UP036 (this script may be started by an older Python)
        sys.exit(f"error: the course needs Python 3.10 or newer, this is {sys.version.split()[0]}")
    pip = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check"]
    needed = _requirements(ROOT / "requirements.txt") + _requirements(ROOT / "requirements-dev.txt")
    missing = _missing(needed)
    torch_missing = importlib.util.find_spec("torch") is None
    if (torch_missing or missing or not _utils_is_ours()) and _externally_managed():
        sys.exit("error: this Python belongs to the operating system, which does not let pip install into it.\n"
                 "Create a virtual environment first: python3 -m venv .venv && . .venv/bin/activate")
    if torch_missing:
        run(pip + [TORCH_SPEC])
    if missing or not _utils_is_ours():
        print(f"installing: {', '.join(missing) or 'the course package from this folder'}", flush=True)
        # Without build isolation, the editable install needs no download when setuptools is present.
        isolation = [] if _missing(["setuptools>=77"]) else ["--no-build-isolation"]
        run(pip + isolation + ["-e", ".", "-r", "requirements-dev.txt"])
        # A by-product of the build; left in the repository folder, it would report a stale
        # version to any Python started here (importlib.metadata reads the current folder first).
        shutil.rmtree(ROOT / "llm_core_concepts.egg-info", ignore_errors=True)
        if not _utils_is_ours():
            sys.exit("error: `utils` still does not import from this folder; is another package named utils installed?")
    else:
        print("setup: everything is installed", flush=True)


def _build_book() -> int:
    shutil.rmtree(ROOT / "_build", ignore_errors=True)
    run([*JUPYTER_BOOK, "build", "--all", "--warningiserror", "--nitpick", "--keep-going", "."])
    index = ROOT / "_build" / "html" / "index.html"
    if not index.exists():
        sys.exit(f"error: the build finished but {index} is missing")
    print(f"book: open {index}")
    return 0


def test_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment the tests and their notebook kernels run in.

    Two workers each run PyTorch with 2 threads on a 2-core machine. OpenMP threads that spin
    while they wait then steal each other's cores, and small-op notebooks (generation, chapters
    9-10) ran 3x slower; passive waiting removes that. Nothing here pins the CPU's kernels: the
    stored outputs must hold whichever kernels and thread count the machine picks (see `matrix`).
    """
    from utils.grade import NO_FRONTEND  # no progress bars, no self-grading (runs after setup)

    return {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"), **NO_FRONTEND, **(extra or {})}


def pytest_command(*targets: str, nbval: bool = True) -> list[str]:
    cmd = [sys.executable, "-m", "pytest", "-n", PYTEST_WORKERS, "--dist", "loadfile", *targets]
    if nbval:
        cmd += ["--nbval", "--nbval-current-env", "--nbval-sanitize-with", "tests/nbval_sanitize.cfg"]
    return cmd


def _run_tests() -> int:
    run([sys.executable, "-m", "utils.notebook_tools", "check"])
    run([sys.executable, "-m", "ruff", "check", "."])  # configured in pyproject.toml
    cmd = pytest_command("tests", "chapters", "solutions")
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, env=test_env()).returncode


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}


def _numpy_dispatch() -> list[str]:
    """The instruction-set groups NumPy picks its loops from at run time (e.g. X86_V3 = AVX2)."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__
    except ImportError:  # NumPy 1.x
        from numpy.core._multiarray_umath import __cpu_dispatch__
    return list(__cpu_dispatch__)


def matrix_configs() -> list[tuple[str, dict[str, str]]]:
    """CPU kernel sets x thread counts that the stored outputs must survive (x86-64 only).

    ``ATEN_CPU_CAPABILITY`` picks PyTorch's vectorised kernels, ``MKL_CBWR`` MKL's code path and
    ``NPY_DISABLE_CPU_FEATURES`` NumPy's: together they make this CPU compute as an older one
    would (``default`` = no AVX at all). The last configuration sets nothing, as on a reader's
    machine.
    """
    import platform

    configs = []
    if platform.machine().lower() in ("x86_64", "amd64"):
        dispatch = _numpy_dispatch()
        avx512 = [f for f in dispatch if f.startswith("AVX512") or f == "X86_V4"]
        avx2 = [f for f in dispatch if f in ("X86_V3", "AVX", "F16C", "FMA3", "AVX2")]
        levels = [("default", "COMPATIBLE", avx2 + avx512), ("avx2", "AVX2", avx512)]
        if "avx512f" in _cpu_flags():
            levels.append(("avx512", "AVX512", []))
        for aten, mkl, numpy_off in levels:
            for threads in ("1", "2"):
                env = {"ATEN_CPU_CAPABILITY": aten, "MKL_CBWR": mkl, "OMP_NUM_THREADS": threads,
                       "MKL_NUM_THREADS": threads}
                if numpy_off:
                    env["NPY_DISABLE_CPU_FEATURES"] = " ".join(numpy_off)
                configs.append((f"{aten} kernels, {threads} thread{'s' if threads != '1' else ''}", env))
    configs.append(("the machine's own choice", {}))
    return configs


def _run_matrix() -> int:
    """Every notebook and unit test under each configuration of `matrix_configs` (not the book)."""
    pins = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NPY_DISABLE_CPU_FEATURES")
    results = []
    for name, extra in matrix_configs():
        print(f"\n=== {name}: {' '.join(f'{k}={v}' for k, v in extra.items()) or '(no pins)'}", flush=True)
        start = time.monotonic()
        cmd = pytest_command("tests", "chapters", "solutions", "--ignore", "tests/test_book.py", "-q")
        env = {k: v for k, v in test_env(extra).items() if k not in pins or k in extra}  # only this config's pins
        code = subprocess.run(cmd, cwd=ROOT, env=env).returncode
        results.append((name, code, time.monotonic() - start))
    print("\n| configuration | result | time |\n|---|---|---|")
    for name, code, seconds in results:
        print(f"| {name} | {'pass' if code == 0 else 'FAIL'} | {seconds / 60:.1f} min |")
    return max(code for _, code, _ in results)


CLAIM_SEEDS = (1, 2, 3)


def _run_claims() -> int:
    """Every notebook that defines SEED, run with other seeds and with bf16 autocast forced.

    Nothing is compared with stored outputs here: the notebooks' own asserts check the claims
    their prose makes, which must hold for a reader's run on any machine and seed.
    """
    import concurrent.futures

    from utils.notebook_tools import has_seed

    notebooks = [p.relative_to(ROOT).as_posix() for folder in ("chapters", "solutions")
                 for p in sorted((ROOT / folder).glob("*.ipynb")) if has_seed(p)]
    runs = [(seed, {}) for seed in CLAIM_SEEDS] + [(0, {"LLMCC_AUTOCAST": "bf16"})]
    jobs = [(nb, seed, extra) for seed, extra in runs for nb in notebooks]

    def one(job):
        nb, seed, extra = job
        cmd = [sys.executable, "-m", "utils.notebook_tools", "claims", nb, "--seed", str(seed)]
        done = subprocess.run(cmd, cwd=ROOT, env=test_env(extra), capture_output=True, text=True)
        print(done.stdout.strip() + (" [bf16 autocast]" if extra else ""), flush=True)
        return nb, seed, bool(extra), done.returncode

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(int(PYTEST_WORKERS)) as pool:
        results = list(pool.map(one, jobs))
    print(f"\n| notebook | {' | '.join(f'SEED = {s}' for s in CLAIM_SEEDS)} | bf16, SEED = 0 |\n|---|"
          + "---|" * (len(CLAIM_SEEDS) + 1))
    for nb in notebooks:
        row = [("pass" if code == 0 else "FAIL") for name, _, _, code in results if name == nb]
        print(f"| {nb} | {' | '.join(row)} |")
    print(f"claims: {len(jobs)} runs in {(time.monotonic() - start) / 60:.1f} min")
    return max((code for *_, code in results), default=0)


def doctor(args: list[str] | None = None) -> int:
    """Print what an issue report needs: Python, PyTorch and its device, the course's requirements.

    Installs nothing and never fails on a missing package: it reports it.
    """
    import platform

    print(f"course folder: {ROOT}")
    print(f"python: {sys.version.split()[0]} at {sys.executable} "
          f"({'virtual environment' if sys.prefix != sys.base_prefix else 'no virtual environment'})")
    print(f"platform: {platform.platform()} ({platform.machine()})")
    print(f"in Colab: {'yes' if importlib.util.find_spec('google') and importlib.util.find_spec('google.colab') else 'no'}")
    try:
        from packaging.requirements import Requirement
    except ImportError:
        Requirement = None
    for spec in _requirements(ROOT / "requirements.txt") + _requirements(ROOT / "requirements-dev.txt"):
        name = Requirement(spec).name if Requirement else re.split(r"[<>=!~ ]", spec, maxsplit=1)[0]
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            print(f"  {name:<16} MISSING (needs {spec})")
            continue
        ok = Requirement is None or Requirement(spec).specifier.contains(version, prereleases=True)
        print(f"  {name:<16} {version:<14} {'ok' if ok else 'OUTSIDE ' + spec}")
    probe = subprocess.run(
        [sys.executable, "-c", "import torch, utils, utils.device as d; "
         "print('torch:', torch.__version__, '| CUDA available:', torch.cuda.is_available(), '| MPS available:', "
         "bool(getattr(torch.backends, 'mps', None) and torch.backends.mps.is_available())); "
         "dev = d.get_device(); print('device the course uses:', dev, '| bf16 autocast:', d.bf16_autocast_enabled(dev)); "
         "print('utils:', utils.__file__, '| course package:', getattr(utils, '__distribution__', None) == "
         "'llm-core-concepts', '| version', getattr(utils, '__version__', '?'))"],
        cwd=ROOT / "scripts", capture_output=True, text=True)
    print(probe.stdout.strip() or f"cannot import torch or the course package: {probe.stderr.strip().splitlines()[-1:]}")
    for key in ("LLMCC_DEVICE", "LLMCC_AUTOCAST", "LLMCC_TORCH_SPEC", "ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS"):
        if key in os.environ:
            print(f"{key}={os.environ[key]}")
    return 0


COLAB_RUNTIMES = ROOT / "tests" / "colab"
# Runs inside the Colab-like environment: execute notebooks the way Colab would, report each.
# Kernels talk over IPC files with names unique to this process: two runners choosing TCP ports at
# the same moment (jupyter_client 7, as in Colab) can pick the same port, and a kernel then hangs.
_COLAB_RUNNER = """
import json, os, sys, tempfile, time
import nbformat
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
results = []
for i, (path, cwd) in enumerate(json.loads(sys.argv[1])):
    nb = nbformat.read(path, as_version=4)
    start = time.monotonic()
    km = AsyncKernelManager(kernel_name="python3", transport="ipc",
                            ip=os.path.join(tempfile.gettempdir(), f"llmcc-{os.getpid()}-{i}"))
    try:
        NotebookClient(nb, timeout=900, km=km, resources={"metadata": {"path": cwd}}).execute()
        error = None
    except Exception as e:
        error = " ".join(str(e).split())[-400:]
    results.append((path, error, round(time.monotonic() - start)))
    print(("pass" if error is None else "FAIL"), path, f"({results[-1][2]} s)", error or "", flush=True)
sys.exit(1 if any(e for _, e, _ in results) else 0)
"""


def _find_python(version: str) -> str | None:
    """A working interpreter for Python `version` ("3.12"): under pyenv, or on PATH."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [str(c / "bin" / "python") for c in sorted(pyenv.glob(f"{version}.*"), reverse=True)]
    candidates += [found for found in [shutil.which(f"python{version}")] if found]
    for candidate in candidates:  # a pyenv shim exists for every version but runs only the active ones
        probe = subprocess.run([candidate, "-c", "import sys, venv; print(sys.version_info[:2])"],
                               capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == str(tuple(int(v) for v in version.split("."))):
            return candidate
    return None


def _freeze(python: str) -> dict[str, str]:
    out = subprocess.run([python, "-m", "pip", "freeze", "--all"], capture_output=True, text=True, check=True).stdout
    return dict(line.split("==", 1) for line in out.splitlines() if "==" in line)


def _run_colab(args: list[str]) -> int:
    """Every chapter and solution in Colab's preinstalled packages, from an empty folder.

    For each runtime file in tests/colab (or those given): a new virtual environment with that
    Python, exactly Colab's versions, then the course's wheel as `pip` would install it in Colab;
    the packages pip changes are reported (there must be none), then every notebook runs in a
    folder that holds nothing but the notebooks, as Colab's /content would.
    """
    import json
    import tempfile

    runtimes = [Path(a) for a in args if not a.startswith("--")] or sorted(COLAB_RUNTIMES.glob("runtime-*.txt"))
    extra = [a.split("=", 1)[1] for a in args if a.startswith("--with=")]  # e.g. --with=transformers==4.57.6
    work = ROOT / "_build" / "colab"
    shutil.rmtree(work / "dist", ignore_errors=True)
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(work / "dist"), "."])
    (wheel,) = (work / "dist").glob("llm_core_concepts-*.whl")
    failures, table = 0, []
    for runtime in runtimes:
        version = re.search(r"py(3\.\d+)", runtime.name).group(1)
        python = _find_python(version)
        if python is None:
            print(f"skip {runtime.name}: no Python {version} on this machine")
            table.append((runtime.name, version, "no interpreter", "", ""))
            continue
        env_dir = work / runtime.stem
        shutil.rmtree(env_dir, ignore_errors=True)
        run([python, "-m", "venv", str(env_dir / "venv")])
        vpy = str(env_dir / "venv" / "bin" / "python")
        start = time.monotonic()
        run([vpy, "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(runtime), *extra])
        before = _freeze(vpy)
        run([vpy, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)])
        after = _freeze(vpy)
        changed = {k: (before.get(k), v) for k, v in after.items() if before.get(k) != v and k != "llm-core-concepts"}
        print(f"{runtime.name}: installing the course changed {changed or 'nothing Colab ships'}", flush=True)
        content = Path(tempfile.mkdtemp(prefix="content-", dir=env_dir))  # like Colab's /content: empty
        jobs = []
        for folder in ("chapters", "solutions"):
            (content / folder).mkdir()
            for nb in sorted((ROOT / folder).glob("*.ipynb")):
                shutil.copy(nb, content / folder / nb.name)
                jobs.append((str(content / folder / nb.name), str(content / folder)))
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        from utils.grade import NO_FRONTEND

        env.update(NO_FRONTEND, MPLBACKEND="Agg", OMP_WAIT_POLICY="PASSIVE", PYDEVD_DISABLE_FILE_VALIDATION="1",
                   PATH=f"{env_dir / 'venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}")
        halves = [jobs[0::2], jobs[1::2]]  # two notebooks at a time
        procs = [subprocess.Popen([vpy, "-c", _COLAB_RUNNER, json.dumps(h)], cwd=content, env=env) for h in halves]
        codes = [p.wait() for p in procs]
        ok = not changed and not any(codes)
        failures += not ok
        extras = " ".join(extra)
        table.append((runtime.name + (f" + {extras}" if extras else ""), subprocess.run(
            [vpy, "-c", "import sys; print(sys.version.split()[0])"], capture_output=True, text=True).stdout.strip(),
            "pass" if ok else "FAIL", f"{(time.monotonic() - start) / 60:.1f} min",
            ", ".join(f"{k} {a} -> {b}" for k, (a, b) in changed.items()) or "none"))
    print("\n| runtime | Python | notebooks | time | packages the course changed |\n|---|---|---|---|---|")
    for row in table:
        print("| " + " | ".join(row) + " |")
    return 1 if failures else 0


STAGES = {"book": _build_book, "test": _run_tests, "matrix": _run_matrix, "claims": _run_claims,
          "colab": _run_colab}


def _after_setup(command: str, args: list[str]) -> int:
    """Run a stage in a fresh interpreter, which sees what setup() has just installed."""
    setup()
    return subprocess.run([sys.executable, str(Path(__file__).resolve()), f"--stage={command}", *args],
                          cwd=ROOT).returncode


def main() -> int:
    args = sys.argv[1:]
    if args and args[0].startswith("--stage=") and args[0][8:] in STAGES:
        stage = STAGES[args[0][8:]]
        return stage(args[1:]) if stage is _run_colab else stage()
    commands = {"setup": lambda rest: setup(), "doctor": doctor, **{name: (lambda rest, name=name: _after_setup(name, rest))
                                                   for name in STAGES}}
    if not args or args[0] not in commands or (args[1:] and args[0] != "colab"):
        print(__doc__)
        return 2
    start = time.monotonic()
    code = commands[args[0]](args[1:]) or 0
    print(f"{args[0]}: finished in {time.monotonic() - start:.0f} s with exit code {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
