"""One config served as several code locations (issue 26): a broken project shows as its own
location's one-line load error, the other locations load, keep their schedules running, and
keep lineage to each other's models by asset key."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import dagster as dg
import pytest
import yaml
from conftest import REPO_ROOT, venv_command
from daemon import running_daemon, schedule_due_at_start
from waiting import wait_for
from webserver import WORKSPACE_LOCATIONS, graphql_when, running_webserver

pytestmark = pytest.mark.timeout(600)

FIDELITY = REPO_ROOT / "tests" / "fidelity" / "projects"
_IGNORE = shutil.ignore_patterns("*.duckdb", "*.duckdb.wal", ".cache", "logs", "target", "__pycache__")
BROKEN_MODEL = "MODEL (name shop.broken, kind FULL);\nSELECT FROM WHERE (\n"
DBT_PROJECT = """
name: marts
version: "1.0.0"
config-version: 2
profile: marts
"""
DBT_PROFILES = """
marts:
  target: dev
  outputs:
    dev: {type: duckdb, path: marts.duckdb, threads: 2}
"""
DBT_SOURCES = """
version: 2
sources:
  - name: warehouse
    schema: sqlmesh_example
    tables: [{name: customers}]
"""


def write_split_deployment(root: Path, *, healthy_schedule: str) -> Path:
    """Three locations from one config: `warehouse` (the SQLMesh example), `marts` (a dbt
    project reading the example's `customers`), `shop` (a SQLMesh project with a broken model)."""
    shutil.copytree(REPO_ROOT / "examples" / "sqlmesh_project", root / "sqlmesh" / "example", ignore=_IGNORE)
    shop = shutil.copytree(FIDELITY / "shop" / "warehouse", root / "sqlmesh" / "shop", ignore=_IGNORE)
    (shop / "models" / "broken.sql").write_text(BROKEN_MODEL)
    marts = root / "dbt" / "marts"
    (marts / "models").mkdir(parents=True)
    (marts / "dbt_project.yml").write_text(DBT_PROJECT)
    (marts / "profiles.yml").write_text(DBT_PROFILES)
    (marts / "models" / "sources.yml").write_text(DBT_SOURCES)
    (marts / "models" / "gold_customers.sql").write_text(
        "select * from {{ source('warehouse', 'customers') }} where tier = 'gold'"
    )
    never = "0 0 1 1 *"
    config = {
        "version": 1,
        "projects": [
            {
                "name": "sqlmesh_example",
                "framework": "sqlmesh",
                "path": "sqlmesh/example",
                "location": "warehouse",
                "schedule": healthy_schedule,
                "janitor_schedule": None,
                "state_backup": {"enabled": False},
            },
            {"name": "marts", "framework": "dbt", "path": "dbt/marts", "location": "marts"},
            {
                "name": "shop",
                "framework": "sqlmesh",
                "path": "sqlmesh/shop",
                "schedule": never,
                "janitor_schedule": None,
                "state_backup": {"enabled": False},
            },
        ],
    }
    (root / ".dagctl").mkdir()
    (root / ".dagctl" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copy(REPO_ROOT / "definitions.py", root / "definitions.py")
    written = subprocess.run(
        [venv_command("dagctl-dagster"), "workspace", "--output", "workspace.yaml"],
        cwd=root,
        capture_output=True,
        text=True,
        env=_env(root, None),
        timeout=120,
    )
    assert written.returncode == 0, written.stderr
    assert "3 code locations" in written.stdout
    return root


def _env(root: Path, dagster_home: Path | None) -> dict[str, str]:
    env = dict(os.environ, DAGCTL_CONFIG=str(root / ".dagctl" / "config.yaml"), DAGCTL_AUTOMATION="on")
    env.pop("DAGSTER_HOME", None)
    if dagster_home is not None:
        env["DAGSTER_HOME"] = str(dagster_home)
    return env


ASSET = """
query ($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    ... on AssetNode { dependencyKeys { path } }
  }
}
"""


@pytest.fixture(scope="module")
def split_deployment(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One split deployment for the module, its healthy project scheduled every minute: the
    webserver test only reads it (a schedule runs only under a daemon), the daemon test runs
    that schedule. The first to load it writes the projects' translation caches beside them,
    as a deployment's first code server does."""
    return write_split_deployment(tmp_path_factory.mktemp("split") / "deployment", healthy_schedule="* * * * *")


def test_a_broken_project_is_its_own_locations_one_line_error(split_deployment: Path, dagster_home: Path):
    root = split_deployment
    with running_webserver(root, _env(root, dagster_home)) as port:
        served = graphql_when(
            port,
            WORKSPACE_LOCATIONS,
            lambda data: all(e["locationOrLoadError"] for e in data["workspaceOrError"]["locationEntries"]),
            "the webserver to load every location",
        )
        locations = {e["name"]: e["locationOrLoadError"] for e in served["workspaceOrError"]["locationEntries"]}
        assert set(locations) == {"warehouse", "marts", "shop"}
        assert locations["warehouse"]["__typename"] == "RepositoryLocation"
        assert locations["marts"]["__typename"] == "RepositoryLocation"
        error = locations["shop"]
        assert error["__typename"] == "PythonError"
        # The UI shows Dagster's "error loading definitions" with its cause: one line naming
        # the project, the file and SQLMesh's error.
        (cause,) = error["causes"]
        assert cause["message"].count("\n") <= 1, cause["message"]
        assert "project 'shop'" in cause["message"] and "broken.sql" in cause["message"], cause["message"]

        dbt_model = graphql(port, ASSET, {"path": ["marts", "gold_customers"]})
        upstream = {"/".join(d["path"]) for d in dbt_model["assetNodeOrError"]["dependencyKeys"]}
        assert upstream == {"sqlmesh_example/customers"}, "no lineage to the other location's model"


def graphql(port: int, query: str, variables: dict) -> dict:
    from webserver import graphql as ask

    return ask(port, query, variables)


def test_the_daemon_keeps_scheduling_the_healthy_location(split_deployment: Path, tmp_path: Path, dagster_home: Path):
    root = split_deployment
    # The queued run is launched within a second of its tick (Dagster's default: every 5 s).
    with (dagster_home / "dagster.yaml").open("a") as config:
        config.write(
            "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: QueuedRunCoordinator\n"
            "  config:\n    dequeue_interval_seconds: 1\n"
        )
    env = _env(root, dagster_home)
    schedule_due_at_start(str(dagster_home), root, "warehouse", "sqlmesh_example_run_schedule", "* * * * *")
    with running_daemon(root, env, tmp_path / "daemon.log") as daemon:
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:

            def scheduled_run_finished() -> dg.DagsterRun | None:
                runs = instance.get_runs(dg.RunsFilter(job_name="sqlmesh_example_run"))
                finished = [r for r in runs if r.is_finished and "dagster/schedule_name" in r.tags]
                return finished[0] if finished else None

            run = wait_for(scheduled_run_finished, "a scheduled run of the healthy location", timeout=300, **daemon)
            assert run.status == dg.DagsterRunStatus.SUCCESS
            assert not instance.get_runs(dg.RunsFilter(job_name="shop_run"))


def test_the_helm_override_runs_one_code_server_per_location(example_repo: Path, dagster_home: Path):
    """`dagctl-dagster workspace --helm-values` repeats the values' code server per location;
    each serves its own projects from the same definitions file."""
    env = _env(example_repo, dagster_home)
    written = subprocess.run(
        [
            venv_command("dagctl-dagster"),
            "workspace",
            "--helm-values",
            str(REPO_ROOT / "helm-values" / "dagster-values.yaml"),
        ],
        cwd=example_repo,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert written.returncode == 0, written.stderr
    deployments = yaml.safe_load(written.stdout)["dagster-user-deployments"]["deployments"]
    served = {}
    for deployment in deployments:
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", deployment["name"]), deployment["name"]
        args = deployment["codeServerArgs"]
        assert args.count("--attribute") == 1
        served[deployment["name"]] = args[args.index("--attribute") + 1]
    assert served == {"sqlmesh-example": "sqlmesh_example", "dbt-example": "dbt_example"}
    # Each code server's `-f definitions.py --attribute <location>`, validated by one command
    # (a workspace entry per code server) rather than one Dagster process per location.
    code_servers = [
        {"python_file": {"relative_path": "definitions.py", "attribute": attribute, "location_name": name}}
        for name, attribute in served.items()
    ]
    (example_repo / "code_servers.yaml").write_text(yaml.safe_dump({"load_from": code_servers}))
    validated = subprocess.run(
        [venv_command("dagster"), "definitions", "validate", "-w", "code_servers.yaml"],
        cwd=example_repo,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert validated.returncode == 0, validated.stderr[-3000:]
    for name in served:
        assert f"Validation successful for code location {name}" in validated.stdout + validated.stderr, (
            validated.stdout[-3000:] + validated.stderr[-3000:]
        )
