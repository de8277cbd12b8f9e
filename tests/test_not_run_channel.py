"""A step that did not run its model says why as a typed value (``NotRun``), which the
claim-aware executor's run summary and the Slack failure hook read: a not-run step counts by
its reason and posts nothing, while a model that failed posts once. Real runs under the
claim-aware executor, in this process; Slack is the Web API stub on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from alerts_helpers import use_slack_stub
from dagster import DagsterInstance
from projects import not_run_jobs, sqlmesh_jobs
from projects.deployment import plan_without_backfill
from projects.sqlmesh_repo import JOB, write_repository
from slack_stub import SlackStub

from dagctl_dagster.alerts.slack import wait_for_pending_messages
from dagctl_dagster.execution.executor import RUN_SUMMARY_MESSAGE
from dagctl_dagster.names import ExecutorSummary

pytestmark = pytest.mark.timeout(300)


def summary_of(result: dg.ExecuteJobResult) -> ExecutorSummary:
    [summary] = [
        ExecutorSummary.from_metadata(e.event_specific_data.metadata)
        for e in result.all_events
        if (e.message or "").startswith(RUN_SUMMARY_MESSAGE)
    ]
    assert summary is not None
    return summary


def step_failures(result: dg.ExecuteJobResult) -> dict[str, str]:
    return {
        e.step_key: e.step_failure_data.user_failure_data.description
        for e in result.all_events
        if e.is_step_failure and e.step_key and e.step_failure_data.user_failure_data
    }


def test_a_step_recorded_as_not_run_counts_by_its_reason_and_posts_nothing(dagster_home: Path, monkeypatch):
    with SlackStub() as stub:
        use_slack_stub(monkeypatch, stub)
        with DagsterInstance.get() as instance:
            result = dg.execute_job(dg.reconstructable(not_run_jobs.get_job), instance, raise_on_error=False)
        assert wait_for_pending_messages(30)

    assert not result.success, "a step that did not run never leaves the run green"
    summary = summary_of(result)
    assert (summary.executed, summary.failed, summary.not_run, summary.not_run_claim_lost) == (1, 1, 1, 1)
    assert step_failures(result)["notrun__refused"] == not_run_jobs.REFUSED_MESSAGE
    [message] = stub.messages  # the failed model's; none for the step that did not run
    assert "`notrun/broken`" in message["text"] and not_run_jobs.BROKEN_ERROR in message["text"]
    assert "refused" not in message["text"]


BOOM_MODEL = """
    import typing as t

    import pandas as pd
    from sqlmesh import ExecutionContext, model


    @model("demo.boom", kind="FULL", columns={"id": "int"})
    def execute(context: ExecutionContext, **kwargs: t.Any) -> pd.DataFrame:
        raise RuntimeError("boom on purpose")
"""


def test_a_sqlmesh_model_not_in_the_environment_is_not_run_and_only_the_failed_model_posts(
    tmp_path: Path, dagster_home: Path, monkeypatch
):
    repo = write_repository(
        tmp_path / "repo",
        {"source.sql": "MODEL (name demo.source, kind FULL);\nSELECT 1 AS id\n", "boom.py": BOOM_MODEL},
    )
    config = repo / ".dagctl" / "config.yaml"
    config.write_text(config.read_text() + "alerts:\n  failure_channel: '#data-alerts'\n")
    plan_without_backfill(repo / "project")
    # Added after the plan: not in environment 'prod' until the next plan.
    (repo / "project" / "models" / "late.sql").write_text("MODEL (name demo.late, kind FULL);\nSELECT 1 AS x\n")
    monkeypatch.chdir(tmp_path)  # the run moves into the project's directory; the test comes back here
    monkeypatch.setenv("DAGCTL_TEST_CONFIG", str(config))
    monkeypatch.setenv("DAGCTL_TEST_JOB", JOB)

    with SlackStub() as stub:
        use_slack_stub(monkeypatch, stub)
        with DagsterInstance.get() as instance:
            result = dg.execute_job(dg.reconstructable(sqlmesh_jobs.get_job), instance, raise_on_error=False)
        assert wait_for_pending_messages(30)

    assert not result.success
    summary = summary_of(result)
    assert (summary.executed, summary.failed) == (1, 1)
    assert (summary.not_run, summary.not_run_not_in_environment) == (1, 1)
    assert "is not in environment 'prod'" in step_failures(result)["proj__demo__late"]
    [message] = stub.messages
    assert "`demo/boom`" in message["text"] and "boom on purpose" in message["text"]
