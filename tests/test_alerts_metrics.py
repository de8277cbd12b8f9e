"""State size observations (DuckDB, PostgreSQL, unreachable), run summaries and JSON logs."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from alerts_helpers import SECRET_PASSWORD, evaluate, use_slack_stub, write_config
from projects.deployment import execute_sql
from slack_stub import SlackStub

from dagctl_dagster.alerts.projects import ProjectLookup
from dagctl_dagster.alerts.run_summary import summarize_run
from dagctl_dagster.alerts.slack import DagctlSlackResource, wait_for_pending_messages
from dagctl_dagster.alerts.state_size import STATE_OBSERVATION_JOB, state_key, state_size_observation
from dagctl_dagster.alerts.tiered import runs_key, tiered_alert_sensor
from dagctl_dagster.config import ProjectConfig
from dagctl_dagster.logging import JsonFormatter, json_console_logger, register_models
from dagctl_dagster.project import ProjectDefinitions
from dagctl_dagster.sqlmesh.state_size import measure_state_size

pytestmark = pytest.mark.timeout(120)

POSTGRES_STATE_CONFIG = """
gateways:
  local:
    connection: {{type: duckdb, database: warehouse.duckdb}}
    state_connection:
      type: postgres
      host: {host}
      port: {port}
      user: {user}
      password: '{password}'
      database: {database}
default_gateway: local
model_defaults: {{dialect: duckdb}}
"""


def sqlmesh_project(tmp_path: Path, url: str) -> tuple[Path, ProjectConfig]:
    parsed = sa.engine.make_url(url)
    host = parsed.host or parsed.query.get("host")  # embedded PostgreSQL listens on a socket directory
    port = parsed.port or int(parsed.query.get("port", 5432))
    project_dir = tmp_path / "analytics"
    (project_dir / "models").mkdir(parents=True)
    (project_dir / "config.yaml").write_text(
        POSTGRES_STATE_CONFIG.format(
            host=host,
            port=port,
            user=parsed.username,
            password=parsed.password or "",
            database=parsed.database,
        )
    )
    return project_dir, ProjectConfig(name="analytics", framework="sqlmesh", path=str(project_dir))


def observe(instance, project_dir: Path, project: ProjectConfig) -> dict:
    assets, jobs, _ = state_size_observation(
        [ProjectDefinitions(project, project_dir, state_probe=partial(measure_state_size, project_dir, project))]
    )
    defs = dg.Definitions(assets=assets, jobs=jobs)
    assert defs.resolve_job_def(STATE_OBSERVATION_JOB).execute_in_process(instance=instance).success
    record = instance.fetch_observations(state_key(project.name), limit=1).records[0]
    return {k: v.value for k, v in record.asset_observation.metadata.items()}


def test_postgres_state_size_is_observed_from_the_state_tables(tmp_path, postgres_url):
    execute_sql(
        postgres_url,
        "CREATE SCHEMA sqlmesh",
        "CREATE TABLE sqlmesh._snapshots AS SELECT g AS id, repeat('x', 500) AS payload FROM generate_series(1, 2000) g",
    )
    with dg.instance_for_test() as instance:
        metadata = observe(instance, *sqlmesh_project(tmp_path, postgres_url))
    assert metadata["reachable"] is True and metadata["backend"] == "postgres"
    assert metadata["size_bytes"] > 2000 * 500  # the table's heap (and its TOAST/index) at least
    assert metadata["database_bytes"] > metadata["size_bytes"]


def test_duckdb_state_size_is_the_file_size(tmp_path):
    project_dir = tmp_path / "analytics"
    project_dir.mkdir()
    (project_dir / "config.yaml").write_text(
        "gateways:\n  local:\n    connection: {type: duckdb, database: warehouse.duckdb}\n"
        "    state_connection: {type: duckdb, database: state.duckdb}\n"
        "default_gateway: local\nmodel_defaults: {dialect: duckdb}\n"
    )
    (project_dir / "state.duckdb").write_bytes(b"\0" * 12345)
    project = ProjectConfig(name="analytics", framework="sqlmesh", path=str(project_dir))
    with dg.instance_for_test() as instance:
        metadata = observe(instance, project_dir, project)
    assert metadata["size_bytes"] == 12345 and metadata["backend"] == "duckdb"


def test_unreachable_state_database_pages(tmp_path, monkeypatch):
    closed_port = f"postgresql://dagctl:{SECRET_PASSWORD}@127.0.0.1:1/state"
    with SlackStub() as stub, dg.instance_for_test() as instance:
        use_slack_stub(monkeypatch, stub)
        lookup = ProjectLookup(write_config(tmp_path, {"page_channel": "#page"}).config)
        sensor = tiered_alert_sensor(lookup, model_keys={}, state_keys={"analytics": state_key("analytics")})
        defs = dg.Definitions(sensors=[sensor], resources={"slack": DagctlSlackResource()})
        cursor = evaluate(sensor, instance, defs, None)
        metadata = observe(instance, *sqlmesh_project(tmp_path, closed_port))
        evaluate(sensor, instance, defs, cursor)
        assert wait_for_pending_messages(30)

    assert metadata["reachable"] is False and "OperationalError" in metadata["error"]
    assert SECRET_PASSWORD not in metadata["error"]
    assert [m["channel"] for m in stub.messages] == ["#page"]
    assert "[page] *analytics*: SQLMesh state database unreachable: OperationalError" in stub.messages[0]["text"]


def test_run_summary_counts_executed_failed_and_blocked_models(tmp_path):
    @dg.asset(key=["analytics", "a"])
    def a() -> None:
        pass

    @dg.asset(key=["analytics", "b"])
    def b() -> None:
        raise ValueError("broken")

    @dg.asset(key=["analytics", "c"], deps=[b])
    def c() -> None:
        pass

    @dg.asset(key=["analytics", "d"], deps=[c])
    def d() -> None:
        pass

    defs = dg.Definitions(
        assets=[a, b, c, d],
        jobs=[
            dg.define_asset_job(
                "analytics_run", selection=dg.AssetSelection.all(), tags={"dagctl/project": "analytics"}
            )
        ],
    )
    with dg.instance_for_test() as instance:
        lookup = ProjectLookup(write_config(tmp_path, {}).config)
        sensor = tiered_alert_sensor(lookup, model_keys={}, state_keys={})
        sensor_defs = dg.Definitions(sensors=[sensor], resources={"slack": DagctlSlackResource()})
        cursor = evaluate(sensor, instance, sensor_defs, None)
        result = defs.resolve_job_def("analytics_run").execute_in_process(instance=instance, raise_on_error=False)
        summary = summarize_run(instance, instance.get_run_record_by_id(result.run_id))
        evaluate(sensor, instance, sensor_defs, cursor)
        run_tags = instance.get_run_by_id(result.run_id).tags
        observation = instance.fetch_observations(runs_key("analytics"), limit=1).records[0]

    assert (summary.executed, summary.failed, summary.blocked, summary.skipped) == (1, 1, 2, 0)
    assert summary.duration_s > 0
    assert run_tags["dagctl/models_executed"] == "1" and run_tags["dagctl/models_blocked"] == "2"
    metadata = observation.asset_observation.metadata
    assert metadata["failed"].value == 1 and metadata["run_id"].value == result.run_id
    assert isinstance(metadata["duration_s"].value, float)


JSON_HANDLER = {
    "python_logs": {
        "dagster_handler_config": {"handlers": {"dagctl_json": {"class": "dagctl_dagster.logging.JsonStdoutHandler"}}}
    }
}


def run_orders_job(instance) -> dg.ExecuteInProcessResult:
    @dg.asset(key=["analytics", "orders"])
    def orders(context) -> None:
        context.log.info(f"loaded 3 rows with password {SECRET_PASSWORD}")

    job = dg.define_asset_job("analytics_run", selection=dg.AssetSelection.all(), tags={"dagctl/project": "analytics"})
    register_models({"analytics__orders": "analytics/orders"})
    return (
        dg.Definitions(assets=[orders], jobs=[job])
        .resolve_job_def("analytics_run")
        .execute_in_process(instance=instance)
    )


def test_json_logs_carry_project_model_and_run_id_on_every_line(capfd, monkeypatch):
    monkeypatch.setenv("SQLMESH_STATE_PASSWORD", SECRET_PASSWORD)
    monkeypatch.setenv("DAGCTL_LOG_FORMAT", "json")
    with dg.instance_for_test(overrides=JSON_HANDLER) as instance:
        capfd.readouterr()
        result = run_orders_job(instance)
        out = capfd.readouterr().out
    lines = [json.loads(line) for line in out.splitlines()]

    assert result.success and len(lines) >= 5
    assert all(line["run_id"] == result.run_id and line["project"] == "analytics" for line in lines)
    step_lines = [line for line in lines if line["step"] == "analytics__orders"]
    assert step_lines and all(line["model"] == "analytics/orders" for line in step_lines)
    user_line = next(line for line in lines if "loaded 3 rows" in line["message"])
    assert user_line["message"] == "loaded 3 rows with password ***"
    assert {"STEP_START", "ASSET_MATERIALIZATION", "STEP_SUCCESS"} <= {line["event"] for line in lines}
    assert SECRET_PASSWORD not in out


def test_json_handler_is_silent_without_the_switch(capfd, monkeypatch):
    monkeypatch.delenv("DAGCTL_LOG_FORMAT", raising=False)
    with dg.instance_for_test(overrides=JSON_HANDLER) as instance:
        capfd.readouterr()
        assert run_orders_job(instance).success
        out = capfd.readouterr().out
    assert not [line for line in out.splitlines() if line.startswith("{")]


def test_json_console_logger_when_run_config_selects_it(capfd):
    @dg.asset(key=["analytics", "orders"])
    def orders(context) -> None:
        context.log.info("hello")

    job = dg.define_asset_job("analytics_run", selection=dg.AssetSelection.all(), tags={"dagctl/project": "analytics"})
    defs = dg.Definitions(
        assets=[orders], jobs=[job], loggers={"console": json_console_logger({"analytics__orders": "analytics/orders"})}
    )
    capfd.readouterr()
    result = defs.resolve_job_def("analytics_run").execute_in_process(run_config={"loggers": {"console": {}}})
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines() if line.startswith("{")]
    hello = next(line for line in lines if line["message"] == "hello")
    assert hello["model"] == "analytics/orders" and hello["run_id"] == result.run_id and hello["project"] == "analytics"


def test_json_formatter_handles_plain_log_records():
    record = dg.get_dagster_logger("x").makeRecord("x", 20, __file__, 1, "plain %s", ("line",), None)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "plain line" and line["run_id"] is None and line["model"] is None
