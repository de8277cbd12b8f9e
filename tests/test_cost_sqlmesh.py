"""What each SQLMesh model costs the warehouse, counted against the warehouse's own log.

A model step counts the statements SQLMesh sends for its model (audits included) and their
time. Each model here is evaluated the way a step evaluates it (``SQLMeshRunSession.
evaluate_model``) on a thread of its own, and its count is compared with what the warehouse
logged: PostgreSQL's ``log_statement = 'all'`` per backend, DuckDB's own query log.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import pytest
from cost_helpers import (
    MODEL_ORDER,
    MODELS,
    evaluate_each_on_a_fresh_thread,
    logged_postgres,
    postgres_connection_yaml,
    write_project,
)
from projects.deployment import plan_without_backfill

from dagctl_dagster.config import ProjectConfig
from dagctl_dagster.cost import COUNT_QUERIES_ENV
from dagctl_dagster.execution.framework import RunSetup
from dagctl_dagster.sqlmesh.context import single_location
from dagctl_dagster.sqlmesh.session import ModelStatus, SQLMeshRunSession

pytestmark = pytest.mark.timeout(300)

DUCKDB_LOGGING = """\
before_all:
  - CALL enable_logging('QueryLog')
after_all:
  - >-
    CREATE OR REPLACE TABLE main.query_log AS
    SELECT epoch_us(l.timestamp) / 1e6 AS logged_at, c.connection_id, l.message
    FROM duckdb_logs() AS l JOIN duckdb_log_contexts() AS c USING (context_id)
    WHERE l.type = 'QueryLog'
"""


def prepared_session(project_dir: Path) -> SQLMeshRunSession:
    plan_without_backfill(project_dir)
    project = ProjectConfig(name="demo", framework="sqlmesh", path=str(project_dir))
    session = SQLMeshRunSession(single_location(project_dir, project), "prod")
    preparation = session.prepare(RunSetup(should_stop=lambda: False))
    assert preparation.error is None, preparation.error
    return session


def fqns(catalog: str) -> dict[str, str]:
    return {name: f'"{catalog}"."demo"."{name.split(".")[1]}"' for name in MODEL_ORDER}


@pytest.fixture
def in_project_dir(tmp_path: Path):
    """SQLMesh resolves a DuckDB path against the working directory, as `sqlmesh` run there."""
    previous = os.getcwd()
    project_dir = tmp_path / "project"
    yield project_dir
    os.chdir(previous)


def test_postgres_counts_equal_the_statements_the_server_logged_for_each_model(in_project_dir: Path):
    with logged_postgres() as postgres:
        project_dir = write_project(
            in_project_dir, postgres_connection_yaml(postgres.warehouse_url), dialect="postgres"
        )
        os.chdir(project_dir)
        session = prepared_session(project_dir)
        try:
            evaluated = evaluate_each_on_a_fresh_thread(session, fqns("warehouse"))
        finally:
            session.close()
        logged = postgres.statements()

    assert [e.outcome.status for e in evaluated.values()] == [ModelStatus.EVALUATED] * len(MODEL_ORDER)
    for name, e in evaluated.items():
        # The server stamps milliseconds; the step's window is widened by as much.
        during = [s for s in logged if e.started - 0.001 <= s.at <= e.ended + 0.001]
        assert len({s.pid for s in during}) == 1, f"{name}: its statements came from one backend, its thread's"
        statements = [s for s in during if not s.transaction_control]
        assert e.outcome.cost.queries == len(statements), (name, e.outcome.cost, len(statements))
    b = evaluated["demo.b"].outcome
    assert len(b.intervals) > 1 and b.cost.queries > evaluated["demo.seed_ids"].outcome.cost.queries
    assert all(e.outcome.cost.query_time_s > 0 for e in evaluated.values())


def test_duckdb_counts_equal_duckdbs_own_query_log_for_each_model(in_project_dir: Path):
    connection = "type: duckdb\ndatabase: warehouse.duckdb\nconcurrent_tasks: 2\n"
    project_dir = write_project(in_project_dir, connection, dialect="duckdb", statements=DUCKDB_LOGGING)
    os.chdir(project_dir)
    session = prepared_session(project_dir)
    try:
        evaluated = evaluate_each_on_a_fresh_thread(session, fqns("warehouse"))
    finally:
        session.close()  # after_all: the query log into main.query_log
    with duckdb.connect(str(project_dir / "warehouse.duckdb"), read_only=True) as con:
        logged = con.sql("SELECT logged_at, connection_id FROM main.query_log").fetchall()

    assert [e.outcome.status for e in evaluated.values()] == [ModelStatus.EVALUATED] * len(MODEL_ORDER)
    for name, e in evaluated.items():
        during = [connection_id for at, connection_id in logged if e.started <= at <= e.ended]
        assert len(set(during)) == 1, f"{name}: its statements came from one connection, its thread's"
        assert e.outcome.cost.queries == len(during), (name, e.outcome.cost, len(during))
        assert e.outcome.cost.query_time_s > 0


def test_counting_off_records_no_cost(in_project_dir: Path, monkeypatch):
    monkeypatch.setenv(COUNT_QUERIES_ENV, "off")
    project_dir = write_project(in_project_dir, "type: duckdb\ndatabase: warehouse.duckdb\n", dialect="duckdb")
    os.chdir(project_dir)
    session = prepared_session(project_dir)
    try:
        evaluated = evaluate_each_on_a_fresh_thread(session, {"demo.seed_ids": fqns("warehouse")["demo.seed_ids"]})
    finally:
        session.close()
    outcome = evaluated["demo.seed_ids"].outcome
    assert outcome.status is ModelStatus.EVALUATED and outcome.cost is None


RUN_ASSETS = """
query {
  assetNodes(group: {groupName: "proj", repositoryName: "__repository__", repositoryLocationName: "dagctl"}) {
    assetKey { path }
    assetMaterializations(limit: 1) {
      runId
      metadataEntries {
        label
        ... on IntMetadataEntry { intValue }
        ... on FloatMetadataEntry { floatValue }
      }
    }
  }
}
"""


@pytest.mark.timeout(600)
def test_a_run_records_each_models_cost_on_its_materialization_its_summary_and_the_ui(tmp_path: Path):
    import dagster as dg
    from projects.sqlmesh_repo import dagster_env, run_job, write_repository
    from webserver import graphql_when, running_webserver

    from dagctl_dagster.execution.executor import RUN_SUMMARY_MESSAGE
    from dagctl_dagster.names import ExecutorSummary

    root = write_repository(tmp_path / "repo", MODELS)
    (root / "workspace.yaml").write_text(
        "load_from:\n  - python_file:\n      relative_path: definitions.py\n      location_name: dagctl\n"
    )
    plan_without_backfill(root / "project")
    home = tmp_path / "home"
    result = run_job(root, home, tmp_path / "elsewhere")
    assert result.returncode == 0, result.output[-6000:]

    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_run_records()
        records = instance.get_records_for_run(run.dagster_run.run_id, limit=1000).records
    events = [r.event_log_entry for r in records]
    materialized = {
        e.dagster_event.asset_key.path[-1]: e.asset_materialization.metadata
        for e in events
        if e.dagster_event is not None and e.dagster_event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
    }
    (summary_event,) = [e for e in events if (e.user_message or "").startswith(RUN_SUMMARY_MESSAGE)]
    summary = ExecutorSummary.from_metadata(summary_event.dagster_event.engine_event_data.metadata)
    with running_webserver(root, dagster_env(home)) as port:
        nodes = graphql_when(
            port,
            RUN_ASSETS,
            lambda data: sum(bool(n["assetMaterializations"]) for n in data["assetNodes"]) == len(MODELS),
            "the webserver to serve the run's materializations",
        )["assetNodes"]

    assert set(materialized) == {name.split(".")[1] for name in MODEL_ORDER}
    for name, metadata in materialized.items():
        assert (
            isinstance(metadata["warehouse_queries"], dg.IntMetadataValue) and metadata["warehouse_queries"].value > 0
        )
        assert isinstance(metadata["warehouse_query_s"], dg.FloatMetadataValue), name
    assert summary is not None
    assert summary.warehouse_queries == sum(m["warehouse_queries"].value for m in materialized.values())
    assert summary.warehouse_query_s == pytest.approx(sum(m["warehouse_query_s"].value for m in materialized.values()))
    for node in nodes:
        shown = {e["label"]: e for e in node["assetMaterializations"][0]["metadataEntries"]}
        name = node["assetKey"]["path"][-1]
        assert shown["warehouse_queries"]["intValue"] == materialized[name]["warehouse_queries"].value, name
        assert shown["warehouse_query_s"]["floatValue"] == pytest.approx(materialized[name]["warehouse_query_s"].value)
