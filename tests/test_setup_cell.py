"""The notebooks' setup cell, run as a learner in Colab would: a clean environment, an empty folder.

Offline: the cell's sources are replaced (LLMCC_INSTALL_FROM) by a wheel built here and by a
tagged local git repository, which stand in for the package index and GitHub's tagged archive.
PIP_NO_DEPS keeps pip from installing the course's dependencies, which the cell does not check.
"""

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

import utils
from utils.notebook_tools import setup_cell_source


@pytest.fixture(scope="module")
def clean_python(tmp_path_factory):
    """A brand-new virtual environment's python (with pip and nothing else)."""
    env_dir = tmp_path_factory.mktemp("clean") / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    return env_dir / ("Scripts" if os.name == "nt" else "bin") / "python"


@pytest.fixture(scope="module")
def wheel(root, tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(root)], check=True, capture_output=True)
    (found,) = out.glob("llm_core_concepts-*.whl")
    return found


def run_cell(python, folder, version=utils.__version__, **env):
    """Execute the setup cell in a fresh interpreter whose working folder is `folder`, as a kernel would."""
    cell = setup_cell_source("https://example.invalid/no-such-repo", version)
    code = "import sys\nsys.path.insert(0, '')\n" + cell + "\nimport utils\nprint('utils', utils.__version__)\n"
    return subprocess.run([str(python), "-c", code], cwd=folder, capture_output=True, text=True,
                          env={**os.environ, "PIP_NO_DEPS": "1", "PIP_NO_INPUT": "1", **env}, timeout=300)


def uninstall(python):
    subprocess.run([str(python), "-m", "pip", "uninstall", "-y", "-q", "llm-core-concepts"], capture_output=True)


def test_wheel_carries_the_stored_models_and_data(wheel):
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    stored = sorted(p.name for p in (Path(utils.__file__).parent / "data").iterdir() if p.suffix in (".pt", ".json", ".txt"))
    assert {"reference_model.pt", "sft_model.pt", "world_tokenizer.json", "parallel_zh.txt"} <= set(stored)
    for data in stored:  # every stored model and result file the chapters load
        assert f"utils/data/{data}" in names
    assert f"llm_core_concepts-{utils.__version__}.dist-info/METADATA" in names


def test_installs_the_pinned_wheel_into_a_clean_environment(clean_python, wheel, tmp_path):
    uninstall(clean_python)
    done = run_cell(clean_python, tmp_path, LLMCC_INSTALL_FROM=str(wheel))
    assert done.returncode == 0, done.stderr
    assert f"installed llm-core-concepts {utils.__version__} from {wheel}" in done.stdout
    assert f"utils {utils.__version__}" in done.stdout
    again = run_cell(clean_python, tmp_path, LLMCC_INSTALL_FROM=str(wheel))  # now a no-op: nothing printed
    assert again.returncode == 0 and again.stdout.strip() == f"utils {utils.__version__}"


def test_installs_from_a_tagged_git_repository(clean_python, root, tmp_path):
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("needs git and a git checkout")
    uninstall(clean_python)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(root), str(clone)], check=True)
    for name in ("utils", "pyproject.toml", "requirements.txt", "requirements-dev.txt", "README.md"):
        if (clone / name).is_dir():  # the working tree's package, which may be ahead of the last commit
            shutil.rmtree(clone / name)
        copy = shutil.copytree if (root / name).is_dir() else shutil.copy
        copy(root / name, clone / name)
    git = ["git", "-C", str(clone), "-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "working tree"], check=True)
    subprocess.run([*git, "tag", f"v{utils.__version__}"], check=True)
    version = utils.__version__
    empty = tmp_path / "content"
    empty.mkdir()
    done = run_cell(clean_python, empty, version=version, LLMCC_INSTALL_FROM=f"git+file://{clone}@v{utils.__version__}")
    if done.returncode != 0 and "setuptools" in done.stderr and "version" in done.stderr.lower():
        pytest.skip("building from source needs setuptools from the package index, which is unreachable")
    assert done.returncode == 0, done.stderr
    assert f"installed llm-core-concepts {version}" in done.stdout


def test_unreachable_sources_stop_with_one_plain_sentence(clean_python, tmp_path):
    uninstall(clean_python)
    done = run_cell(clean_python, tmp_path, LLMCC_INSTALL_FROM=str(tmp_path / "missing.whl"))
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError: Could not install the course package llm-core-concepts")
    assert "Connect (in Colab: Runtime > Connect) and run this cell again" in last


def test_a_stray_utils_module_is_named(clean_python, wheel, tmp_path):
    uninstall(clean_python)
    (tmp_path / "utils.py").write_text("x = 1\n")
    done = run_cell(clean_python, tmp_path, LLMCC_INSTALL_FROM=str(wheel))
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "Another module named utils" in last and "utils.py" in last and "Rename or delete it" in last


def test_another_installed_version_only_gets_a_note(clean_python, wheel, tmp_path):
    uninstall(clean_python)
    assert run_cell(clean_python, tmp_path, LLMCC_INSTALL_FROM=str(wheel)).returncode == 0
    done = run_cell(clean_python, tmp_path, version="0.0.1", LLMCC_INSTALL_FROM=str(wheel))
    assert done.returncode == 0
    assert "written for llm-core-concepts 0.0.1" in done.stdout  # outside Colab it keeps what is installed
