"""This code location as a Dagster component in a project made the `dg` way: a `defs.yaml`
naming the example's `.dagctl/config.yaml`, checked and launched with the real `dg` CLI."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import REPO_ROOT, copy_repository, venv_command

PYPROJECT = """\
[project]
name = "dagctl_demo"
version = "0.1.0"
requires-python = ">=3.11"
dependencies = ["dagctl-dagster"]

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "dagctl_demo"
"""
DEFINITIONS = """\
from pathlib import Path

import dagster as dg


@dg.definitions
def defs() -> dg.Definitions:
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
"""
DEFS_YAML = """\
type: dagctl_dagster.DagctlComponent
attributes:
  config_path: ../../../.dagctl/config.yaml
"""


def dg_project(root: Path) -> Path:
    """A dg project whose one component serves a copy of the example deployment."""
    copy_repository(root)
    (root / "definitions.py").unlink()
    (root / "workspace.yaml").unlink()
    (root / "pyproject.toml").write_text(PYPROJECT)
    package = root / "dagctl_demo"
    (package / "defs" / "dagctl").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "definitions.py").write_text(DEFINITIONS)
    (package / "defs" / "dagctl" / "defs.yaml").write_text(DEFS_YAML)
    return root


def dg(args: list[str], project: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if k != "DAGCTL_CONFIG"}
    env.update(
        DAGSTER_HOME=str(home),
        VIRTUAL_ENV=str(REPO_ROOT / ".venv"),
        SQLMESH_EXAMPLE_DB=str(tmp_path / "sqlmesh_warehouse.duckdb"),
        DBT_EXAMPLE_DB=str(tmp_path / "dbt_warehouse.duckdb"),
    )
    return subprocess.run(
        [venv_command("dg"), *args], cwd=project, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.timeout(900)
def test_dg_project_declaring_the_component_checks_and_launches_both_examples(tmp_path: Path):
    project = dg_project(tmp_path / "dagctl_demo")

    check = dg(["check", "defs", "--use-active-venv"], project, tmp_path)
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:]
    assert "All definitions loaded successfully" in check.stdout + check.stderr

    for job in ("sqlmesh_example_run", "dbt_example_run"):
        launch = dg(["launch", "--job", job], project, tmp_path)
        output = launch.stdout + launch.stderr
        assert launch.returncode == 0, output[-4000:]
        assert f'Finished execution of run for "{job}"' in output, output[-4000:]
        assert "STEP_FAILURE" not in output


@pytest.mark.timeout(300)
def test_component_config_path_is_relative_to_its_defs_yaml(tmp_path: Path):
    from dagctl_dagster import DagctlComponent

    component = DagctlComponent(config_path="../../../.dagctl/config.yaml")
    folder = tmp_path / "p" / "pkg" / "defs" / "dagctl"
    assert component.resolved_config_path(folder) == (tmp_path / "p" / ".dagctl" / "config.yaml").resolve()
    assert DagctlComponent(config_path="/etc/x.yaml").resolved_config_path(folder) == Path("/etc/x.yaml")
