"""The repository's conventions: workflows, release, citation, issue forms."""

import re

import yaml

import utils


def _workflow(root, name):
    data = yaml.safe_load((root / ".github" / "workflows" / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def test_every_workflow_parses_and_every_job_has_steps(root):
    for path in sorted((root / ".github" / "workflows").glob("*.yml")):
        data = _workflow(root, path.name)
        assert data["on"], path
        for name, job in data["jobs"].items():
            assert job.get("runs-on") and job.get("steps"), f"{path.name}: job {name}"
            for step in job["steps"]:
                assert ("uses" in step) != ("run" in step), f"{path.name}: {name}: a step needs uses or run"


def test_portability_matrix_covers_systems_pythons_and_the_oldest_torch(root):
    job = _workflow(root, "test.yml")["jobs"]["portability"]
    matrix = job["strategy"]["matrix"]
    assert set(matrix["os"]) == {"ubuntu-latest", "macos-latest", "windows-latest"}
    requires = re.search(r'requires-python = ">=(\d\.\d+)"', (root / "pyproject.toml").read_text()).group(1)
    assert requires in matrix["python"] and "3.13" in matrix["python"]
    torch_floor = re.search(r"^torch>=([\d.]+)", (root / "requirements.txt").read_text(), re.M).group(1)
    assert any(inc.get("torch") == f"torch=={torch_floor}.0" for inc in matrix["include"]), "oldest torch"
    assert _workflow(root, "test.yml")["jobs"]["test"]["steps"][-1]["run"] == "bash .ci/run"


def test_release_is_triggered_by_a_version_tag_and_checks_it(root):
    release = _workflow(root, "release.yml")
    assert release["on"]["push"]["tags"] == ["v*"]
    steps = "\n".join(s.get("run", "") for s in release["jobs"]["build"]["steps"])
    assert "utils/__init__.py" in steps and "GITHUB_REF_NAME" in steps and "python -m build" in steps
    assert any("pypi-publish" in s.get("uses", "") for s in release["jobs"]["pypi"]["steps"])


def test_citation_names_the_current_version(root):
    cff = yaml.safe_load((root / "CITATION.cff").read_text())
    assert cff["version"] == utils.__version__
    assert set(cff["license"]) == {"MIT", "CC-BY-4.0"}


def test_issue_form_asks_where_it_runs_and_for_the_environment_report(root):
    form = yaml.safe_load((root / ".github" / "ISSUE_TEMPLATE" / "bug_report.yml").read_text())
    ids = {item.get("id") for item in form["body"]}
    assert {"runs-on", "doctor"} <= ids
    assert "course.py doctor" in (root / ".github" / "ISSUE_TEMPLATE" / "bug_report.yml").read_text()


def _schema_check(schema, *files):
    """check-jsonschema with the schema it ships (no download): SchemaStore's GitHub schemas."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, *map(str, files)]
    return subprocess.run(cmd, capture_output=True, text=True)


def test_workflows_and_issue_forms_are_valid_for_github(root, tmp_path):
    workflows = sorted((root / ".github" / "workflows").glob("*.yml"))
    done = _schema_check("vendor.github-workflows", *workflows)
    assert done.returncode == 0, done.stdout + done.stderr
    forms = [p for p in sorted((root / ".github" / "ISSUE_TEMPLATE").glob("*.yml")) if p.name != "config.yml"]
    done = _schema_check("vendor.github-issue-forms", *forms)
    assert done.returncode == 0, done.stdout + done.stderr
    # The validator does catch a broken workflow (a misspelt key, a job without runs-on).
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  test:\n    step:\n      - run: echo hi\n")
    assert _schema_check("vendor.github-workflows", broken).returncode != 0


def test_ruff_is_configured_and_run_by_the_test_command(root):
    assert "[tool.ruff.lint]" in (root / "pyproject.toml").read_text()
    assert '"ruff", "check"' in (root / "scripts" / "course.py").read_text()
    assert re.search(r"^ruff[<>=]", (root / "requirements-dev.txt").read_text(), re.M)
