"""The built wheel in a team's own Dagster project, at both ends of its Dagster range.

Each end is a fresh uv virtualenv outside the repository with the wheel installed from the
package registry, and a project made by Dagster's own `create-dagster project` whose defs
come from `dg scaffold defs dagctl_dagster.DagctlComponent`:

- lowest: Python 3.11, every direct dependency at its declared lower bound (uv's
  `lowest-direct` resolution over the wheel's requirements), with the dbt, duckdb and postgres
  extras and the sqlglot override docs/install.md gives; the SQLMesh and the dbt example run.
- highest: Python 3.13, the newest versions the registry resolves, the core and `dev-ui`
  only; the SQLMesh example (on a DuckDB-only config) runs, and configs that need a missing
  extra say which.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import REPO_ROOT, instance_home
from declared import declared_range
from installs import (
    NO_BYTECODE_ENV,
    SQLGLOT_OVERRIDE,
    build_wheel,
    discard_shared_dir,
    installed_versions,
    interpreter,
    make_venv,
    once,
    run,
    shared_dir,
    uv,
    wheel_requirements,
)
from packaging.version import Version

SQLMESH_PROJECT = """\
  - name: sqlmesh_example
    framework: sqlmesh
    path: examples/sqlmesh_project
    gateway: local
"""
# The example's DuckDB gateway as a team on DuckDB would write it: the example's config.py also
# declares a PostgreSQL gateway, which SQLMesh cannot even construct without psycopg2.
DUCKDB_ONLY_SQLMESH_CONFIG = """\
gateways:
  local:
    connection:
      type: duckdb
      database: "{{ env_var('SQLMESH_EXAMPLE_DB') }}"
      concurrent_tasks: 5
default_gateway: local
model_defaults: {dialect: duckdb, start: '2026-11-01', cron: '@daily'}
before_all:
  - CREATE SCHEMA IF NOT EXISTS raw
  - >-
    CREATE TABLE IF NOT EXISTS raw.customers AS SELECT * FROM (VALUES (1, 'Ada', 'gold'),
    (2, 'Grace', 'silver'), (3, 'Linus', 'gold'), (4, 'Barbara', 'bronze')) AS t(customer_id, name, tier)
"""
DBT_PROJECT = """\
  - name: dbt_example
    framework: dbt
    path: examples/dbt_project
    target: dev
"""


@dataclass(frozen=True)
class End:
    python: str
    extras: frozenset[str]
    resolution: str
    jobs: tuple[str, ...]
    projects: tuple[str, ...] = field(default=(SQLMESH_PROJECT,))
    sqlmesh_config: str | None = None  # replaces the example's config.py


ENDS = {
    "lowest": End(
        "3.11",
        # postgres: the example's config.py declares a PostgreSQL gateway besides DuckDB.
        frozenset({"dev-ui", "dbt", "duckdb", "postgres"}),
        "lowest-direct",
        ("sqlmesh_example_run", "dbt_example_run"),
        (SQLMESH_PROJECT, DBT_PROJECT),
    ),
    "highest": End(
        "3.13", frozenset({"dev-ui"}), "highest", ("sqlmesh_example_run",), sqlmesh_config=DUCKDB_ONLY_SQLMESH_CONFIG
    ),
}


@dataclass(frozen=True)
class Installed:
    end: End
    venv: Path
    project: Path
    wheel: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def command(self, args: list[str], cwd: Path, home: Path, **env: str) -> subprocess.CompletedProcess:
        environment = venv_environment(self.venv, home, **env)
        return subprocess.run(args, cwd=cwd, env=environment, capture_output=True, text=True, timeout=600)


def venv_environment(venv: Path, home: Path, **env: str) -> dict[str, str]:
    """The environment of a shell with ``venv`` activated and its own DAGSTER_HOME."""
    environment = {k: v for k, v in os.environ.items() if k not in {"DAGCTL_CONFIG", "VIRTUAL_ENV", NO_BYTECODE_ENV}}
    environment.update(
        VIRTUAL_ENV=str(venv),
        PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        DAGSTER_HOME=str(home),
        DAGSTER_DG_UPDATE_CHECK_ENABLED="0",  # create-dagster/dg would ask the index for news
        **env,
    )
    return environment


def config_text(*projects: str, extra: str = "") -> str:
    return "version: 1\n" + extra + "projects:\n" + "".join(projects)


def copy_examples(root: Path, *projects: str, extra: str = "", sqlmesh_config: str | None = None) -> Path:
    ignore = shutil.ignore_patterns("*.duckdb", "*.duckdb.wal", ".cache", "logs", "target", "__pycache__")
    shutil.copytree(REPO_ROOT / "examples", root / "examples", ignore=ignore, dirs_exist_ok=True)
    if sqlmesh_config is not None:
        (root / "examples" / "sqlmesh_project" / "config.py").unlink()
        (root / "examples" / "sqlmesh_project" / "config.yaml").write_text(sqlmesh_config)
    (root / ".dagctl").mkdir(parents=True, exist_ok=True)
    config = root / ".dagctl" / "config.yaml"
    config.write_text(config_text(*projects, extra=extra))
    return config


def install(venv: Path, end: End, wheel: Path) -> None:
    python = make_venv(venv, interpreter(end.python))
    requirements = wheel_requirements(wheel, set(end.extras))
    (dagster,) = [r for r in requirements if r.name == "dagster"]
    direct = [str(r) for r in requirements] + [f"create-dagster{dagster.specifier}"]
    overrides = venv.parent / f"{venv.name}-overrides.txt"
    overrides.write_text(SQLGLOT_OVERRIDE + "\n" if "dbt" in end.extras else "")
    extras = ",".join(sorted(end.extras))
    run(
        [uv(), "pip", "install", "--quiet", "--python", str(python), "--resolution", end.resolution]
        + ["--override", str(overrides), f"{wheel}[{extras}]", *direct]
    )


def scaffold_project(root: Path, venv: Path, end: End) -> None:
    """`create-dagster project`, the example configs, `dg scaffold defs`, then installed as a team would."""
    root.mkdir()
    env = venv_environment(venv, instance_home(root / "home"))
    run(["create-dagster", "project", "demo", "--no-uv-sync"], cwd=root, env=env)
    project = root / "demo"
    copy_examples(project, *end.projects, sqlmesh_config=end.sqlmesh_config)
    scaffold = ["dg", "scaffold", "defs", "dagctl_dagster.DagctlComponent", "dagctl"]
    run([*scaffold, "--config-path", ".dagctl/config.yaml"], cwd=project, env=env)
    run([uv(), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), "--no-deps", "-e", str(project)])


@pytest.fixture(scope="module")
def installs_root() -> Iterator[Path]:
    """The wheel, both venvs and both projects; deleted when this module is done with them."""
    yield shared_dir("wheel-install")
    discard_shared_dir("wheel-install")


@pytest.fixture(scope="module", params=sorted(ENDS))
def end(request, installs_root: Path) -> Installed:
    root = installs_root
    wheel_dir = once(root / "wheel", lambda path: build_wheel(path))
    (wheel,) = wheel_dir.glob("*.whl")
    spec = ENDS[request.param]
    venv = once(root / f"venv-{request.param}", lambda path: install(path, spec, wheel))
    project = once(root / f"project-{request.param}", lambda path: scaffold_project(path, venv, spec))
    return Installed(spec, venv, project / "demo", wheel)


# Prints each module named in argv that imports.
IMPORTABLE = """
import importlib, sys
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception:
        continue
    print(name)
"""


def locked(name: str) -> Version:
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
    (version,) = {p["version"] for p in lock["package"] if p["name"] == name}
    return Version(version)


def test_the_wheel_installs_at_each_end_of_its_ranges(end: Installed):
    versions = installed_versions(end.python)
    dagster = Version(versions["dagster"])
    assert dagster in declared_range("dagster")
    if end.end.resolution == "lowest-direct":
        floors = {
            r.name.lower(): spec.version
            for r in wheel_requirements(end.wheel, set(end.end.extras))
            for spec in r.specifier
            if spec.operator == ">="
        }
        below = {
            name: versions.get(name) for name, floor in floors.items() if Version(versions[name]) != Version(floor)
        }
        assert not below, f"not installed at the declared lower bound: {below} (floors {floors})"
    else:
        # The newest Dagster the registry resolves with dg is never older than the one we develop on.
        assert dagster >= locked("dagster"), versions["dagster"]


@pytest.mark.timeout(900)
def test_a_scaffolded_dg_project_checks_its_defs_and_runs(end: Installed, tmp_path: Path):
    defs_yaml = (end.project / "src" / "demo" / "defs" / "dagctl" / "defs.yaml").read_text()
    assert "type: dagctl_dagster.DagctlComponent" in defs_yaml
    assert "config_path: '{{ context.project_root }}/.dagctl/config.yaml'" in defs_yaml
    home = instance_home(tmp_path / "home")
    warehouses = dict(
        SQLMESH_EXAMPLE_DB=str(tmp_path / "sqlmesh_warehouse.duckdb"),
        DBT_EXAMPLE_DB=str(tmp_path / "dbt_warehouse.duckdb"),
    )

    check = end.command(["dg", "check", "defs"], end.project, home, **warehouses)
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-3000:]
    assert "All definitions loaded successfully" in check.stdout + check.stderr

    for job in end.end.jobs:
        launch = end.command(["dg", "launch", "--job", job], end.project, home, **warehouses)
        output = launch.stdout + launch.stderr
        assert launch.returncode == 0, output[-4000:]
        assert f'Finished execution of run for "{job}"' in output, output[-4000:]
        assert "STEP_FAILURE" not in output


@pytest.mark.parametrize("end", ["highest"], indirect=True)
def test_the_core_without_extras_names_the_extra_a_config_needs(end: Installed, tmp_path: Path):
    # One interpreter tries each import (one start-up, not four) and names those that succeed.
    modules = ("dagster_dbt", "dagster_slack", "dagster_k8s", "psycopg2")
    probe = end.command([str(end.python), "-c", IMPORTABLE, *modules], tmp_path, tmp_path)
    assert probe.returncode == 0, probe.stderr
    for module in modules:
        assert module not in probe.stdout.split(), f"{module} is installed; this environment must have the core only"

    cases = {
        "dbt": (config_text(SQLMESH_PROJECT, DBT_PROJECT), "projects[1].framework: dbt project 'dbt_example'"),
        "slack": (
            config_text(SQLMESH_PROJECT, extra="alerts:\n  failure_channel: '#data'\n"),
            "alerts.failure_channel",
        ),
    }
    copy_examples(tmp_path, sqlmesh_config=end.end.sqlmesh_config)
    for extra, (text, where) in cases.items():
        config = tmp_path / ".dagctl" / f"needs-{extra}.yaml"
        config.write_text(text)
        result = end.command(["dagctl-dagster", "validate", "--config", str(config)], tmp_path, tmp_path)
        assert result.returncode == 1, result.stdout + result.stderr
        assert result.stderr.strip().splitlines() == [
            f"error: {config}: {where}"
            + ("" if extra == "dbt" else ": Slack alerting")
            + f" needs the `{extra}` extra, which is not installed: pip install 'dagctl-dagster[{extra}]'"
        ], result.stderr

    render = end.command(["dagctl-dagster", "k8s", "render", "--project", "sqlmesh_example"], tmp_path, tmp_path)
    assert render.returncode == 1
    assert render.stderr.strip().splitlines() == [
        "error: dagctl_dagster.k8s (DagctlK8sRunLauncher, `dagctl-dagster k8s`) needs the `k8s` extra, "
        "which is not installed: pip install 'dagctl-dagster[k8s]'"
    ], render.stderr
