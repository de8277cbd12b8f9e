"""Issue 27 on SQLMesh: what a run reports is what SQLMesh did, no more, no less.

Each test goes through the real `dagster` CLI on a project `sqlmesh init` could have written
(DuckDB, one concurrent task), and reads what Dagster recorded.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, EventRecordsFilter
from projects.deployment import plan_without_backfill
from projects.sqlmesh_repo import run_job, write_repository
from test_code_location import example_env
from test_surface import group_keys, materialize_all
from webserver import graphql, running_webserver

from dagctl_dagster.names import FRESHNESS_CHECK_NAME, ROW_COUNT_KEY, SQLMESH_DURATION_KEY


def _events(home: Path, event_type: DagsterEventType) -> list:
    os.environ["DAGSTER_HOME"] = str(home)
    with DagsterInstance.get() as instance:
        return [r.event_log_entry for r in instance.get_event_records(EventRecordsFilter(event_type), limit=10_000)]


def _materializations(home: Path) -> dict[str, list[dict]]:
    """Each asset's materializations' metadata (raw values), oldest first."""
    found: dict[str, list[dict]] = {}
    for entry in reversed(_events(home, DagsterEventType.ASSET_MATERIALIZATION)):
        materialization = entry.dagster_event.event_specific_data.materialization
        metadata = {key: value.value for key, value in materialization.metadata.items()}
        found.setdefault(materialization.asset_key.to_user_string(), []).append(metadata)
    return found


METADATA_MODELS = {
    "numbers.sql": "MODEL (name demo.numbers, kind FULL);\nSELECT range AS id FROM range(200)\n",
    "evens.sql": "MODEL (name demo.evens, kind FULL);\nSELECT id FROM demo.numbers WHERE id % 2 = 0\n",
    "daily.sql": """
        MODEL (name demo.daily, kind INCREMENTAL_BY_TIME_RANGE (time_column ds), start '2026-11-20');
        SELECT id, @start_ds::DATE AS ds FROM demo.numbers WHERE id < 3
    """,
}


@pytest.mark.timeout(600)
def test_plan_evaluated_models_get_their_plan_time_and_rebuilt_tables_their_row_count(tmp_path: Path):
    repo = write_repository(tmp_path / "repo", METADATA_MODELS)
    home = tmp_path / "home"
    first = run_job(repo, home, tmp_path / "elsewhere")
    assert first.returncode == 0, first.output[-6000:]
    evaluated = _materializations(home)
    assert set(evaluated) == {"demo/numbers", "demo/evens", "demo/daily"}
    for key, [metadata] in evaluated.items():
        assert metadata["evaluated_by_plan"] is True
        # The time SQLMesh spent evaluating the model in the first plan, not a default of 0.
        assert metadata[SQLMESH_DURATION_KEY] > 0, (key, metadata)
    # FULL tables are rebuilt by each evaluation: their row count is known without counting.
    assert evaluated["demo/numbers"][0][ROW_COUNT_KEY] == 200
    assert evaluated["demo/evens"][0][ROW_COUNT_KEY] == 100
    # An incremental batch adds rows to a table holding others: no number rather than a wrong one.
    assert ROW_COUNT_KEY not in evaluated["demo/daily"][0]

    second = run_job(repo, home, tmp_path / "elsewhere")
    assert second.returncode == 0, second.output[-6000:]
    assert "snapshots, nothing due" in second.output
    assert "with 0 due batches" not in second.output


@pytest.mark.timeout(600)
def test_a_run_evaluating_a_full_model_reports_its_row_count(tmp_path: Path):
    repo = write_repository(tmp_path / "repo", METADATA_MODELS)
    plan_without_backfill(repo / "project")
    home = tmp_path / "home"
    result = run_job(repo, home, tmp_path / "elsewhere")
    assert result.returncode == 0, result.output[-6000:]
    assert "3 due batches in 3 snapshots" in result.output
    evaluated = _materializations(home)
    assert "evaluated_by_plan" not in evaluated["demo/numbers"][0]
    assert evaluated["demo/numbers"][0][ROW_COUNT_KEY] == 200
    assert evaluated["demo/evens"][0][ROW_COUNT_KEY] == 100
    assert ROW_COUNT_KEY not in evaluated["demo/daily"][0]


CHECKS = """
query ($group: String!) {
  assetNodes(group: {groupName: $group, repositoryName: "__repository__", repositoryLocationName: "dagctl"}) {
    assetKey { path }
    assetChecksOrError {
      ... on AssetChecks { checks { name executionForLatestMaterialization { status runId } } }
    }
  }
}
"""


def audit_check_statuses(port: int, group: str) -> dict[str, tuple[str | None, str | None]]:
    """Each SQLMesh audit check's latest status and run, as the UI reads them (the
    `dagctl_freshness` checks are the alerts' own, not SQLMesh audits)."""
    nodes = graphql(port, CHECKS, {"group": group})["assetNodes"]
    statuses: dict[str, tuple[str | None, str | None]] = {}
    for node in nodes:
        for check in node["assetChecksOrError"].get("checks", []):
            if check["name"] == FRESHNESS_CHECK_NAME:
                continue
            latest = check["executionForLatestMaterialization"] or {}
            statuses[f"{'/'.join(node['assetKey']['path'])}:{check['name']}"] = (
                latest.get("status"),
                latest.get("runId"),
            )
    return statuses


@pytest.mark.timeout(900)
def test_a_no_op_materialize_all_keeps_every_audits_latest_status(example_repo: Path, dagster_home: Path):
    (dagster_home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nrun_coordinator:\n"
        "  module: dagster._core.run_coordinator\n  class: DefaultRunCoordinator\n"
    )
    with running_webserver(example_repo, example_env(example_repo, dagster_home)) as port:
        keys = set(group_keys(port, "sqlmesh_example"))
        first_run, first_status = materialize_all(port, keys)
        after_first = audit_check_statuses(port, "sqlmesh_example")
        second_run, second_status = materialize_all(port, keys)
        after_second = audit_check_statuses(port, "sqlmesh_example")

    assert first_status == second_status == "SUCCESS"
    assert "sqlmesh_example/incremental_orders:assert_positive_amount" in after_first
    assert {status for status, _ in after_first.values()} == {"SUCCEEDED"}, after_first
    assert {key: status for key, (status, _) in after_second.items()} == {
        key: status for key, (status, _) in after_first.items()
    }
    # The second run reported them (nothing was due, so no audit ran): no "skipped" record.
    assert {run for _, run in after_second.values()} == {second_run}
    with DagsterInstance.get() as instance:
        messages = [entry.message or "" for entry in instance.all_logs(second_run)]
    unyielded = [m for m in messages if "did not yield or return expected outputs" in m and "sqlmesh_example" in m]
    assert not [m for m in unyielded if FRESHNESS_CHECK_NAME not in m], unyielded
