"""Alerts and metrics on the bundled example projects, through `load_definitions`."""

from __future__ import annotations

import os

import dagster as dg
import pytest
from alerts_helpers import SECRET_TOKEN, use_slack_stub
from slack_stub import SlackStub

from dagctl_dagster.alerts.slack import wait_for_pending_messages
from dagctl_dagster.names import DBT_DURATION_KEY, MODEL_DURATION_KEYS, ROW_COUNT_KEY

pytestmark = pytest.mark.timeout(600)

FAILING_MODEL = """MODEL (name sqlmesh_example.broken_feed, kind FULL);
SELECT error('upstream feed delivered no header row') AS id
"""


def load(example_repo, monkeypatch):
    from dagctl_dagster import load_definitions

    monkeypatch.chdir(example_repo)
    monkeypatch.setenv("SQLMESH_EXAMPLE_DB", str(example_repo / "warehouse.duckdb"))
    return load_definitions(example_repo / ".dagctl" / "config.yaml")


def materializations(instance, run_id):
    return [
        e.dagster_event.event_specific_data.materialization
        for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    ]


def test_every_materialization_has_numeric_model_metrics(example_repo, monkeypatch, dagster_home):
    defs = load(example_repo, monkeypatch)
    with dg.DagsterInstance.get() as instance:
        for job_name in ("sqlmesh_example_run", "dbt_example_run"):
            result = defs.resolve_job_def(job_name).execute_in_process(instance=instance)
            assert result.success
            found = materializations(instance, result.run_id)
            assert len(found) >= 3, job_name
            for materialization in found:
                metadata = materialization.metadata
                if job_name.startswith("sqlmesh"):
                    assert isinstance(metadata["duration_s"].value, float)
                    assert isinstance(metadata["intervals"].value, int)
                    rows = metadata.get("rows_processed")
                    assert rows is None or isinstance(rows.value, int)
                else:  # dagster-dbt's timing and row count, which the slow-model rule reads
                    assert isinstance(metadata[DBT_DURATION_KEY].value, float)
                    assert DBT_DURATION_KEY in MODEL_DURATION_KEYS
                    rows = metadata.get(ROW_COUNT_KEY)
                    assert rows is None or isinstance(rows.value, int)


def test_failing_example_model_posts_one_slack_message(example_repo, monkeypatch, dagster_home):
    (example_repo / "examples" / "sqlmesh_project" / "models" / "broken_feed.sql").write_text(FAILING_MODEL)
    config = example_repo / ".dagctl" / "config.yaml"
    config.write_text(
        config.read_text().replace("timezone: UTC\n", "timezone: UTC\nalerts:\n  failure_channel: '#data-alerts'\n", 1)
    )
    with SlackStub() as stub:
        use_slack_stub(monkeypatch, stub)
        defs = load(example_repo, monkeypatch)
        with dg.DagsterInstance.get() as instance:
            result = defs.resolve_job_def("sqlmesh_example_run").execute_in_process(
                instance=instance, raise_on_error=False
            )
        assert wait_for_pending_messages(30)

    assert not result.success
    assert len(stub.messages) == 1, [m["text"] for m in stub.messages]
    text = stub.messages[0]["text"]
    assert stub.messages[0]["channel"] == "#data-alerts"
    assert "*sqlmesh_example*" in text and "broken_feed" in text and result.run_id in text
    assert "upstream feed delivered no header row" in text
    assert SECRET_TOKEN not in text and os.environ["SQLMESH_STATE_PASSWORD"] not in text
