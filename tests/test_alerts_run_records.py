"""Run summaries count models, and every run that includes a project's models is recorded on
the project's observability assets: "Materialize all" (the `dagster asset materialize`
equivalent) twice on the SQLMesh example, then one selection across both examples, through
the real `dagster` CLI; the tiered-alert sensor then ticks on the same instance with the code
location's own definitions, as the daemon would."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from alerts_helpers import evaluate
from test_code_location import SQLMESH_MODELS, dagster, example_env
from test_surface import DBT_KEYS

from dagctl_dagster.alerts.state_size import state_key
from dagctl_dagster.alerts.tiered import runs_key
from dagctl_dagster.execution.executor import RUN_SUMMARY_MESSAGE
from dagctl_dagster.names import SUMMARY_PROJECT_KEY, ExecutorSummary
from dagctl_dagster.run_identity import TIERED_ALERTS_SENSOR

pytestmark = pytest.mark.timeout(900)


def materialize(repo: Path, env: dict[str, str], selection: str) -> str:
    result = dagster(["asset", "materialize", "-f", "definitions.py", "--select", selection], repo, env)
    assert result.returncode == 0, result.stderr[-4000:]
    with dg.DagsterInstance.get() as instance:
        return instance.get_runs(limit=1)[0].run_id


def executor_summaries(instance: dg.DagsterInstance, run_id: str) -> dict[str | None, ExecutorSummary]:
    found = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        if (entry.message or "").startswith(RUN_SUMMARY_MESSAGE):
            metadata = entry.dagster_event.engine_event_data.metadata
            summary = ExecutorSummary.from_metadata(metadata)
            assert summary is not None
            project = metadata.get(SUMMARY_PROJECT_KEY)
            found[project.value if project is not None else None] = summary
    return found


def observations(instance: dg.DagsterInstance, key: dg.AssetKey) -> list[dict]:
    records = instance.fetch_observations(key, limit=100, ascending=True).records
    return [{k: v.value for k, v in r.asset_observation.metadata.items()} for r in records]


def test_summaries_count_models_and_every_run_of_a_projects_models_is_recorded(
    example_repo: Path, dagster_home: Path, monkeypatch
):
    from dagctl_dagster import load_definitions

    env = example_env(example_repo, dagster_home)
    for name in ("SQLMESH_EXAMPLE_DB", "DBT_EXAMPLE_DB", "DAGCTL_CONFIG"):
        monkeypatch.setenv(name, env[name])
    defs = load_definitions(example_repo / ".dagctl" / "config.yaml")
    sensor = defs.get_sensor_def(TIERED_ALERTS_SENSOR)
    with dg.DagsterInstance.get() as instance:
        cursor = evaluate(sensor, instance, defs, None)

    first = materialize(example_repo, env, "group:sqlmesh_example")  # "Materialize all"
    second = materialize(example_repo, env, "group:sqlmesh_example")  # nothing is due now
    across = materialize(example_repo, env, "group:sqlmesh_example or group:dbt_example")

    with dg.DagsterInstance.get() as instance:
        evaluate(sensor, instance, defs, cursor)
        summaries = {run: executor_summaries(instance, run) for run in (first, second, across)}
        sqlmesh_runs = observations(instance, runs_key("sqlmesh_example"))
        dbt_runs = observations(instance, runs_key("dbt_example"))
        state = observations(instance, state_key("sqlmesh_example"))

    models, dbt_models = len(SQLMESH_MODELS), len(DBT_KEYS)
    counted = lambda s: (s.executed, s.nothing_due, s.failed)  # noqa: E731
    assert counted(summaries[first][None]) == (models, 0, 0)
    assert counted(summaries[second][None]) == (0, models, 0)
    # one dbt build step of all the dbt models counts its models
    assert counted(summaries[across][None]) == (dbt_models, models, 0)
    assert counted(summaries[across]["sqlmesh_example"]) == (0, models, 0)
    assert counted(summaries[across]["dbt_example"]) == (dbt_models, 0, 0)

    assert [(r["run_id"], r["executed"], r["nothing_due"]) for r in sqlmesh_runs] == [
        (first, models, 0),
        (second, 0, models),
        (across, 0, models),
    ]
    assert [(r["run_id"], r["executed"], r["nothing_due"]) for r in dbt_runs] == [(across, dbt_models, 0)]
    assert len(state) == 3 and all(r["reachable"] is True and r["size_bytes"] > 0 for r in state), state
