"""The code location end to end: the `dagster` CLI, the webserver's GraphQL API, validation.

One copy of the example deployment (`materialized`) is materialized through the real `dagster`
CLI: "Materialize all" of both examples in one run, the SQLMesh group alone (nothing is due),
then both groups again. Its tests read what the runs left: the warehouses and materializations,
the run summaries and the projects' observability assets (recorded by the tiered-alert sensor,
ticked in this process on the same instance, as the daemon would).

The webserver's asset graph (`GRAPHQL_ASSETS`) is read in `test_freshness.py`, from that module's
one webserver on the example deployment."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from conftest import copy_repository, instance_home, venv_command
from dagster import AssetKey, DagsterEventType, DagsterInstance, EventRecordsFilter

from dagctl_dagster.execution.executor import RUN_SUMMARY_MESSAGE
from dagctl_dagster.names import SUMMARY_PROJECT_KEY, ExecutorSummary

SQLMESH_MODELS = {
    "sqlmesh_example/seed_orders": 12,
    "sqlmesh_example/incremental_orders": 12,
    "sqlmesh_example/customers": 4,
    "sqlmesh_example/orders_enriched": 12,
    "sqlmesh_example/item_revenue": 5,
    "sqlmesh_example/tier_revenue": 3,
    "sqlmesh_example/daily_revenue": 10,
}
BOTH_EXAMPLES = "group:sqlmesh_example or group:dbt_example"
SQLMESH_CHECKS = {
    ("sqlmesh_example/incremental_orders", "assert_positive_amount"),
    ("sqlmesh_example/item_revenue", "not_null"),
}


def example_env(repo: Path, dagster_home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DAGSTER_HOME=str(dagster_home),
        SQLMESH_EXAMPLE_DB=str(repo / "sqlmesh_warehouse.duckdb"),
        DBT_EXAMPLE_DB=str(repo / "dbt_warehouse.duckdb"),
        DAGCTL_CONFIG=str(repo / ".dagctl" / "config.yaml"),
    )
    return env


def dagster(args: list[str], repo: Path, env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [venv_command("dagster"), *args], cwd=repo, env=env, capture_output=True, text=True, timeout=timeout
    )


def dbt_models(repo: Path) -> set[str]:
    return {p.stem for p in (repo / "examples" / "dbt_project" / "models").rglob("*.sql")}


def materializations(instance: DagsterInstance, key: str) -> list:
    records = instance.get_event_records(
        EventRecordsFilter(DagsterEventType.ASSET_MATERIALIZATION, asset_key=AssetKey.from_user_string(key))
    )
    return [r.event_log_entry.asset_materialization for r in records]


@dataclass(frozen=True)
class Materialized:
    """The example deployment after three runs through the `dagster` CLI, on one instance."""

    repo: Path
    env: dict[str, str]
    home: Path
    both: str  # "Materialize all" of both examples in one run: every model is evaluated
    sqlmesh_again: str  # the SQLMesh group alone: nothing is due
    both_again: str  # both groups again: dbt builds, SQLMesh has nothing due
    sqlmesh_rows: dict[str, int]  # each SQLMesh table's rows after the first run
    dbt_tables: set[str]  # the dbt warehouse's tables after the first run


def materialize(repo: Path, env: dict[str, str], home: Path, selection: str) -> str:
    result = dagster(["asset", "materialize", "-f", "definitions.py", "--select", selection], repo, env)
    assert result.returncode == 0, result.stderr[-4000:]
    with DagsterInstance.from_config(str(home)) as instance:
        return instance.get_runs(limit=1)[0].run_id


@pytest.fixture(scope="module")
def materialized(tmp_path_factory: pytest.TempPathFactory) -> Materialized:
    """One copy of the example and its runs, read by every test of what the runs left (each such
    test used to make its own copy and runs: the runs are most of its time). The tiered-alert
    sensor ticks before and after the runs on the same instance, with the code location's own
    definitions loaded in this process, as the daemon would."""
    from alerts_helpers import evaluate

    from dagctl_dagster import load_definitions
    from dagctl_dagster.run_identity import TIERED_ALERTS_SENSOR

    work = tmp_path_factory.mktemp("materialized")
    repo = copy_repository(work / "repo")
    home = instance_home(work / "dagster_home")
    env = example_env(repo, home)
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name in ("SQLMESH_EXAMPLE_DB", "DBT_EXAMPLE_DB", "DAGCTL_CONFIG", "DAGSTER_HOME"):
            monkeypatch.setenv(name, env[name])
        defs = load_definitions(repo / ".dagctl" / "config.yaml")
        sensor = defs.get_sensor_def(TIERED_ALERTS_SENSOR)
        with DagsterInstance.from_config(str(home)) as instance:
            cursor = evaluate(sensor, instance, defs, None)

        both = materialize(repo, env, home, BOTH_EXAMPLES)  # "Materialize all"
        with duckdb.connect(env["SQLMESH_EXAMPLE_DB"], read_only=True) as con:
            sqlmesh_rows = {
                key: con.sql(f"select count(*) from {key.replace('/', '.')}").fetchone()[0] for key in SQLMESH_MODELS
            }
        with duckdb.connect(env["DBT_EXAMPLE_DB"], read_only=True) as con:
            dbt_tables = {row[0] for row in con.sql("select table_name from information_schema.tables").fetchall()}
        sqlmesh_again = materialize(repo, env, home, "group:sqlmesh_example")  # nothing is due now
        both_again = materialize(repo, env, home, BOTH_EXAMPLES)

        with DagsterInstance.from_config(str(home)) as instance:
            evaluate(sensor, instance, defs, cursor)
    return Materialized(repo, env, home, both, sqlmesh_again, both_again, sqlmesh_rows, dbt_tables)


@pytest.mark.timeout(1200)
def test_cli_materializes_every_model_of_both_examples(materialized: Materialized):
    """One `dagster asset materialize` of both examples' groups evaluates every model of both;
    the SQLMesh group again, and both groups again, evaluate no SQLMesh model."""
    repo = materialized.repo
    for key, expected_rows in SQLMESH_MODELS.items():
        assert materialized.sqlmesh_rows[key] == expected_rows, key
    assert dbt_models(repo) <= materialized.dbt_tables

    with DagsterInstance.from_config(str(materialized.home)) as instance:
        for key in SQLMESH_MODELS:
            # Nothing was due in the later runs: they evaluated nothing and record no materialization.
            [(run_id, event)] = _materializations_by_run(instance, key)
            assert run_id == materialized.both, key
            assert event.metadata["batches"].value == 1
            assert event.metadata["intervals"].value >= 1  # the days since the project's start
            assert isinstance(event.metadata["duration_s"].value, float)
            assert event.metadata["initial_plan_applied"].value is True
        for model in dbt_models(repo):
            events = [
                e for key in (f"dbt_example/{model}", model) for e in _materializations_by_run(instance, key)
            ] or [e for e in _materializations_by_run(instance) if e[1].asset_key.path[-1] == model]
            assert events, f"dbt model {model} has no materialization"
            for run in (materialized.both, materialized.both_again):  # dbt builds its models each time
                of_run = [event for run_id, event in events if run_id == run]
                assert of_run, f"dbt model {model} has no materialization in run {run}"
                assert "Execution Duration" in of_run[-1].metadata


def _materializations_by_run(instance: DagsterInstance, key: str | None = None) -> list:
    """(run id, materialization) of ``key`` (of every asset without one)."""
    records = instance.get_event_records(
        EventRecordsFilter(
            DagsterEventType.ASSET_MATERIALIZATION,
            asset_key=AssetKey.from_user_string(key) if key is not None else None,
        ),
        limit=1000,
    )
    return [(r.event_log_entry.run_id, r.event_log_entry.asset_materialization) for r in records]


def executor_summaries(instance: DagsterInstance, run_id: str) -> dict[str | None, ExecutorSummary]:
    found = {}
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        if (entry.message or "").startswith(RUN_SUMMARY_MESSAGE):
            metadata = entry.dagster_event.engine_event_data.metadata
            summary = ExecutorSummary.from_metadata(metadata)
            assert summary is not None
            project = metadata.get(SUMMARY_PROJECT_KEY)
            found[project.value if project is not None else None] = summary
    return found


def observations(instance: DagsterInstance, key: AssetKey) -> list[dict]:
    records = instance.fetch_observations(key, limit=100, ascending=True).records
    return [{k: v.value for k, v in r.asset_observation.metadata.items()} for r in records]


def test_summaries_count_models_and_every_run_of_a_projects_models_is_recorded(materialized: Materialized):
    """Run summaries count models (a run spanning projects adds one per project), and every run
    that includes a project's models is recorded on the project's observability assets: the
    runs of `materialized`, seen by the tiered-alert sensor's tick after them."""
    from test_surface import DBT_KEYS

    from dagctl_dagster.alerts.state_size import state_key
    from dagctl_dagster.alerts.tiered import runs_key

    first, second, across = materialized.both, materialized.sqlmesh_again, materialized.both_again
    with DagsterInstance.from_config(str(materialized.home)) as instance:
        summaries = {run: executor_summaries(instance, run) for run in (first, second, across)}
        sqlmesh_runs = observations(instance, runs_key("sqlmesh_example"))
        dbt_runs = observations(instance, runs_key("dbt_example"))
        state = observations(instance, state_key("sqlmesh_example"))

    models, dbt_models_ = len(SQLMESH_MODELS), len(DBT_KEYS)
    counted = lambda s: (s.executed, s.nothing_due, s.failed)  # noqa: E731
    # one dbt build step of all the dbt models counts its models
    assert counted(summaries[first][None]) == (models + dbt_models_, 0, 0)
    assert counted(summaries[first]["sqlmesh_example"]) == (models, 0, 0)
    assert counted(summaries[first]["dbt_example"]) == (dbt_models_, 0, 0)
    assert counted(summaries[second][None]) == (0, models, 0)
    assert counted(summaries[across][None]) == (dbt_models_, models, 0)
    assert counted(summaries[across]["sqlmesh_example"]) == (0, models, 0)
    assert counted(summaries[across]["dbt_example"]) == (dbt_models_, 0, 0)

    assert [(r["run_id"], r["executed"], r["nothing_due"]) for r in sqlmesh_runs] == [
        (first, models, 0),
        (second, 0, models),
        (across, 0, models),
    ]
    assert [(r["run_id"], r["executed"], r["nothing_due"]) for r in dbt_runs] == [
        (first, dbt_models_, 0),
        (across, dbt_models_, 0),
    ]
    assert len(state) == 3 and all(r["reachable"] is True and r["size_bytes"] > 0 for r in state), state


@pytest.mark.timeout(300)
def test_definitions_validate_passes_on_workspace(materialized: Materialized):
    """On the materialized copy: its first run already loaded the workspace cold, so this
    validation is the workspace's ordinary (warm) load."""
    result = dagster(["definitions", "validate", "-w", "workspace.yaml"], materialized.repo, materialized.env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Validation successful" in result.stdout + result.stderr


@pytest.mark.timeout(300)
def test_definitions_validate_names_the_broken_model(example_repo: Path, dagster_home: Path):
    broken = example_repo / "examples" / "sqlmesh_project" / "models" / "broken.sql"
    broken.write_text("MODEL (name sqlmesh_example.broken, kind FULL);\nSELECT FROM WHERE (\n")
    result = dagster(
        ["definitions", "validate", "-w", "workspace.yaml"], example_repo, example_env(example_repo, dagster_home)
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "project 'sqlmesh_example'" in output
    assert "broken.sql" in output


GRAPHQL_ASSETS = """
{
  assetNodes {
    assetKey { path }
    isExecutable
    dependencyKeys { path }
    assetChecksOrError { ... on AssetChecks { checks { name } } }
  }
}
"""
