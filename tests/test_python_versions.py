"""Python 3.12 and 3.13, beside the suite's own 3.11: the locked environment installs on each,
the package tests pass, and one run materializes the SQLMesh and the dbt example.

Each interpreter gets one venv for this module (`uv sync --frozen`: exactly uv.lock's
versions, every extra), made outside the repository. A missing interpreter fails the test
with what to install; it is never skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from conftest import REPO_ROOT, copy_repository, instance_home
from installs import NO_BYTECODE_ENV, discard_shared_dir, interpreter, once, run, shared_dir, uv
from test_code_location import SQLMESH_MODELS, dbt_models

# The suite itself runs on 3.11 (.venv); these are the other interpreters requires-python admits.
VERSIONS = ("3.12", "3.13")
# Tests of the package itself: config and extras, and the seams' pins of the versions installed.
PACKAGE_TESTS = (
    "tests/test_extras.py",
    "tests/test_sqlmesh_internals.py",
    "tests/test_dagster_adapter.py::test_the_adapter_states_the_dagster_range_pyproject_declares",
    "tests/test_dbt_internals.py::test_the_seam_states_the_dagster_dbt_range_pyproject_declares",
    "tests/test_dbt_internals.py::test_the_seam_is_pinned_to_the_installed_dagster_dbt",
)


def sync(venv: Path, python: str) -> None:
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv)}
    run([uv(), "sync", "--frozen", "--quiet", "--python", python], cwd=REPO_ROOT, env=env)


@pytest.fixture(scope="module")
def venvs_root() -> Iterator[Path]:
    """Both venvs; deleted when this module is done with them."""
    yield shared_dir("python-versions")
    discard_shared_dir("python-versions")


@pytest.fixture(scope="module", params=VERSIONS)
def venv(request, venvs_root: Path) -> Path:
    python = interpreter(request.param)
    path = once(venvs_root / f"py{request.param}", lambda p: sync(p, python))
    reported = run([str(path / "bin" / "python"), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
    assert reported.stdout.strip() == request.param
    return path


def environment(venv: Path, **env: str) -> dict[str, str]:
    """This venv activated; no trace of the outer pytest worker (the inner pytest is a session of its own)."""
    outer = {
        k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "DAGCTL_CONFIG")) and k != NO_BYTECODE_ENV
    }
    return {**outer, "VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}", **env}


@pytest.mark.timeout(900)
def test_the_package_tests_pass(venv: Path):
    command = [str(venv / "bin" / "python"), "-m", "pytest", "-p", "no:cacheprovider", "-n", "0", "-q"]
    result = run([*command, *PACKAGE_TESTS], cwd=REPO_ROOT, env=environment(venv))
    assert " passed" in result.stdout and "skipped" not in result.stdout, result.stdout[-2000:]


@pytest.mark.timeout(900)
def test_one_run_materializes_the_sqlmesh_and_the_dbt_example(venv: Path, tmp_path: Path):
    repo = copy_repository(tmp_path / "repo")
    env = environment(
        venv,
        DAGSTER_HOME=str(instance_home(tmp_path / "home")),
        SQLMESH_EXAMPLE_DB=str(repo / "sqlmesh_warehouse.duckdb"),
        DBT_EXAMPLE_DB=str(repo / "dbt_warehouse.duckdb"),
    )
    selection = "group:sqlmesh_example or group:dbt_example"
    run(
        [str(venv / "bin" / "dagster"), "asset", "materialize", "-f", "definitions.py", "--select", selection],
        cwd=repo,
        env=env,
    )
    with duckdb.connect(env["SQLMESH_EXAMPLE_DB"], read_only=True) as con:
        for key, rows in SQLMESH_MODELS.items():
            assert con.sql(f"select count(*) from {key.replace('/', '.')}").fetchone()[0] == rows, key
    with duckdb.connect(env["DBT_EXAMPLE_DB"], read_only=True) as con:
        tables = {row[0] for row in con.sql("select table_name from information_schema.tables").fetchall()}
    assert dbt_models(repo) <= tables
