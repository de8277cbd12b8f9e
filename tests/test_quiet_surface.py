"""The README's CLI commands speak only when there is something to say: a run prints no
warnings, an expected error is one line without a traceback, dbt's error appears once."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import venv_command
from test_code_location import example_env


def run(command: list[str], repo: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.timeout(600)
def test_cli_run_prints_no_warnings(example_repo: Path, dagster_home: Path):
    env = example_env(example_repo, dagster_home)
    result = run(
        [venv_command("dg"), "launch", "--job", "sqlmesh_example_run", "-f", "definitions.py"], example_repo, env
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "RUN_SUCCESS" in output
    assert "Warning" not in output, [line for line in output.splitlines() if "Warning" in line]
    assert "Traceback" not in output


@pytest.mark.timeout(300)
def test_config_error_is_one_line_without_traceback(example_repo: Path, dagster_home: Path):
    config = example_repo / ".dagctl" / "config.yaml"
    config.write_text(config.read_text().replace("timezone: UTC", "timezone: UTC\nbogus_field: 1"))
    env = example_env(example_repo, dagster_home)
    result = run(
        [venv_command("dg"), "launch", "--job", "sqlmesh_example_run", "-f", "definitions.py"], example_repo, env
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: {config}: bogus_field: unknown key; remove it or check its spelling against docs/config.md"
    ]


@pytest.mark.timeout(300)
def test_project_load_error_is_one_line_and_validate_prints_dbts_error_once(example_repo: Path, dagster_home: Path):
    broken = example_repo / "examples" / "dbt_project" / "models" / "marts" / "broken.sql"
    broken.write_text("select * from {{ ref('does_not_exist') }}\n")
    env = example_env(example_repo, dagster_home)

    validate = run([venv_command("dagctl-dagster"), "validate", "--config", ".dagctl/config.yaml"], example_repo, env)
    output = validate.stdout + validate.stderr
    assert validate.returncode == 1
    assert output.count("does_not_exist") == 1, output
    assert output.startswith("error: project 'dbt_example', file models/marts/broken.sql: dbt parse failed")

    launch = run([venv_command("dg"), "launch", "--job", "dbt_example_run", "-f", "definitions.py"], example_repo, env)
    assert launch.returncode != 0
    assert "Traceback" not in launch.stdout + launch.stderr
    (line,) = launch.stderr.strip().splitlines()
    assert line.startswith("error: project 'dbt_example', file models/marts/broken.sql: dbt parse failed")
