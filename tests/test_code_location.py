"""The code location end to end: the `dagster` CLI, the webserver's GraphQL API, validation.

The webserver's asset graph (`GRAPHQL_ASSETS`) is read in `test_freshness.py`, from that module's
one webserver on the example deployment."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import duckdb
import pytest
from conftest import venv_command
from dagster import AssetKey, DagsterEventType, DagsterInstance, EventRecordsFilter

SQLMESH_MODELS = {
    "sqlmesh_example/seed_orders": 12,
    "sqlmesh_example/incremental_orders": 12,
    "sqlmesh_example/customers": 4,
    "sqlmesh_example/orders_enriched": 12,
    "sqlmesh_example/item_revenue": 5,
    "sqlmesh_example/tier_revenue": 3,
    "sqlmesh_example/daily_revenue": 10,
}
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


@pytest.mark.timeout(1200)
def test_cli_materializes_every_model_of_both_examples(example_repo: Path, dagster_home: Path):
    env = example_env(example_repo, dagster_home)
    selection = "group:sqlmesh_example or group:dbt_example"
    first = dagster(["asset", "materialize", "-f", "definitions.py", "--select", selection], example_repo, env)
    assert first.returncode == 0, first.stderr[-4000:]

    with duckdb.connect(env["SQLMESH_EXAMPLE_DB"], read_only=True) as con:
        for key, expected_rows in SQLMESH_MODELS.items():
            table = key.replace("/", ".")
            assert con.sql(f"select count(*) from {table}").fetchone()[0] == expected_rows, table
    with duckdb.connect(env["DBT_EXAMPLE_DB"], read_only=True) as con:
        dbt_tables = {row[0] for row in con.sql("select table_name from information_schema.tables").fetchall()}
    assert dbt_models(example_repo) <= dbt_tables

    with DagsterInstance.get() as instance:
        for key in SQLMESH_MODELS:
            [event] = materializations(instance, key)
            assert event.metadata["batches"].value == 1
            assert event.metadata["intervals"].value >= 1  # the days since the project's start
            assert isinstance(event.metadata["duration_s"].value, float)
            assert event.metadata["initial_plan_applied"].value is True
        for model in dbt_models(example_repo):
            events = [e for key in (f"dbt_example/{model}", model) for e in materializations(instance, key)] or [
                e for e in _all_materializations(instance) if e.asset_key.path[-1] == model
            ]
            assert events, f"dbt model {model} has no materialization"
            assert "Execution Duration" in events[-1].metadata

    second = dagster(
        ["asset", "materialize", "-f", "definitions.py", "--select", "group:sqlmesh_example"], example_repo, env
    )
    assert second.returncode == 0, second.stderr[-4000:]
    with DagsterInstance.get() as instance:
        for key in SQLMESH_MODELS:
            # Nothing was due: the second run evaluated nothing and records no materialization.
            [only] = materializations(instance, key)
            assert only.metadata["initial_plan_applied"].value is True, key


def _all_materializations(instance: DagsterInstance) -> list:
    records = instance.get_event_records(EventRecordsFilter(DagsterEventType.ASSET_MATERIALIZATION), limit=1000)
    return [r.event_log_entry.asset_materialization for r in records]


@pytest.mark.timeout(300)
def test_definitions_validate_passes_on_workspace(example_repo: Path, dagster_home: Path):
    result = dagster(
        ["definitions", "validate", "-w", "workspace.yaml"], example_repo, example_env(example_repo, dagster_home)
    )
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
