"""scripts/course.py: the environment report, the CPU matrix and the command line."""

import importlib.util
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def course(root):
    spec = importlib.util.spec_from_file_location("course", root / "scripts" / "course.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_doctor_reports_python_torch_device_and_every_requirement(root, course):
    out = subprocess.run([sys.executable, str(root / "scripts" / "course.py"), "doctor"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for req in course._requirements(root / "requirements.txt") + course._requirements(root / "requirements-dev.txt"):
        name = req.split(">")[0].split("<")[0].split("=")[0].strip()
        assert f"  {name} " in out.stdout, name
    assert "device the course uses: cpu" in out.stdout or "device the course uses: cuda" in out.stdout
    assert "course package: True" in out.stdout


def test_matrix_covers_kernels_and_threads(course, monkeypatch):
    monkeypatch.setattr(course, "_cpu_flags", lambda: {"avx2", "avx512f"})
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    configs = dict(course.matrix_configs())
    kernels = {env.get("ATEN_CPU_CAPABILITY") for env in configs.values()}
    assert kernels == {"default", "avx2", "avx512", None}  # None: the machine's own choice, no pins
    assert {env.get("OMP_NUM_THREADS") for env in configs.values()} == {"1", "2", None}
    assert len(configs) == 7
    monkeypatch.setattr(course, "_cpu_flags", lambda: {"avx2"})
    assert "avx512" not in {env.get("ATEN_CPU_CAPABILITY") for _, env in course.matrix_configs()}


def test_unknown_command_prints_usage(root):
    out = subprocess.run([sys.executable, str(root / "scripts" / "course.py"), "bake"], capture_output=True, text=True)
    assert out.returncode == 2 and "python scripts/course.py test" in out.stdout
