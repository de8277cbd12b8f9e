"""The `<project>_plan` job on the example SQLMesh project: dry run, apply, limits, protection."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pytest

from dagctl_dagster.config import load_config
from dagctl_dagster.sqlmesh.context import open_context
from dagctl_dagster.sqlmesh.plan import (
    ENVIRONMENT_CHANGED,
    EnvironmentChangedError,
    apply_plan,
    build_plan,
    build_plan_job,
)

MODEL = "sqlmesh_example.daily_revenue"


@pytest.fixture
def example(example_repo: Path, tmp_path: Path, monkeypatch):
    """The example project with prod applied once; returns (loaded config, project, warehouse)."""
    warehouse = tmp_path / "warehouse.duckdb"
    monkeypatch.setenv("SQLMESH_EXAMPLE_DB", str(warehouse))
    loaded = load_config(example_repo / ".dagctl" / "config.yaml")
    project = loaded.config.project("sqlmesh_example")
    with open_context(loaded, project) as context:
        context.plan("prod", auto_apply=True, no_prompts=True)
    return loaded, project, warehouse


def _edit_daily_revenue(loaded) -> None:
    path = loaded.root / "examples" / "sqlmesh_project" / "models" / "daily_revenue.sql"
    path.write_text(path.read_text().replace("AS revenue", "AS revenue,\n  COUNT(*)::INTEGER AS num_orders"))


def _run(job: dg.JobDefinition, **config):
    return job.execute_in_process(run_config={"ops": {_op(job): {"config": config}}}, raise_on_error=False)


def _op(job: dg.JobDefinition) -> str:
    (node,) = job.graph.node_defs
    return node.name


def _output_metadata(result) -> dict:
    (event,) = [e for e in result.all_events if e.is_successful_output]
    return {key: value.value for key, value in event.event_specific_data.metadata.items()}


def _failure(result) -> str:
    assert not result.success
    return result.failure_data_for_node(_op(result.job_def)).error.message


def _columns(warehouse: Path) -> list[str]:
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        return [row[0] for row in conn.execute(f"DESCRIBE {MODEL}").fetchall()]


@pytest.mark.timeout(240)
def test_dry_run_reports_the_modified_model_then_apply_backfills_it(example):
    loaded, project, warehouse = example
    with open_context(loaded, project) as context:
        # The model's whole history: what restating it in prod would process.
        prod_intervals = build_plan(context, "prod", restate_models=[MODEL]).summary.intervals[MODEL]
    assert prod_intervals > 1  # daily intervals since the project's start date
    _edit_daily_revenue(loaded)
    job = build_plan_job(loaded, project)
    assert job.tags["dagctl/project"] == "sqlmesh_example"

    dry = _run(job)
    assert dry.success
    metadata = _output_metadata(dry)
    assert metadata["directly_modified"] == {MODEL: "non_breaking"}
    assert metadata["added"] == [] and metadata["removed"] == []
    assert metadata["indirectly_modified"] == {}
    assert metadata["backfill_intervals"] == {MODEL: prod_intervals}
    assert metadata["backfill_intervals_total"] == prod_intervals
    assert metadata["applied"] is False
    assert metadata["plan_evaluation_s"] > 0
    assert f"| {MODEL} | directly modified | non_breaking | {prod_intervals} |" in metadata["summary"]
    assert "num_orders" not in _columns(warehouse)

    small = build_plan_job(loaded, project.model_copy(update={"max_backfill_intervals": prod_intervals - 1}))
    refused = _run(small, auto_apply=True)
    message = _failure(refused)
    assert (
        f"the plan backfills {prod_intervals} intervals, more than max_backfill_intervals ({prod_intervals - 1})"
        in message
    )
    assert "allow_large_backfill: true" in message
    assert "num_orders" not in _columns(warehouse)

    assert not [e for e in dry.all_events if e.is_step_materialization]  # a dry run evaluates nothing

    applied = _run(small, auto_apply=True, allow_large_backfill=True)
    assert applied.success
    assert _output_metadata(applied)["applied"] is True
    # The intervals the plan evaluated are recorded on the asset, so its last materialization
    # agrees with SQLMesh state.
    recorded = {
        e.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
        for e in applied.all_events
        if e.is_step_materialization
    }
    assert recorded["sqlmesh_example/daily_revenue"]["intervals"].value == prod_intervals
    assert recorded["sqlmesh_example/daily_revenue"]["evaluated_by_plan"].value is True
    assert "num_orders" in _columns(warehouse)
    with duckdb.connect(str(warehouse), read_only=True) as conn:
        assert conn.execute(f"SELECT SUM(num_orders) FROM {MODEL}").fetchone()[0] > 0


@pytest.mark.timeout(240)
def test_protected_project_applies_only_when_approved(example):
    loaded, project, warehouse = example
    _edit_daily_revenue(loaded)
    job = build_plan_job(loaded, project.model_copy(update={"protected": True}))

    unapproved = _run(job, auto_apply=True)
    metadata = _output_metadata(unapproved)
    assert metadata["applied"] is False
    assert "protected" in metadata["not_applied_because"] and "approved: true" in metadata["not_applied_because"]
    assert "num_orders" not in _columns(warehouse)

    stale = _run(job, approved=True, environment_plan_id="plan-that-is-gone")
    assert "environment changed since the plan; plan again" in _failure(stale)

    approved = _run(job, approved=True, environment_plan_id=metadata["environment_plan_id"])
    assert _output_metadata(approved)["applied"] is True
    assert "num_orders" in _columns(warehouse)


@pytest.mark.timeout(240)
def test_apply_fails_when_another_plan_reached_the_environment_first(example):
    loaded, project, _ = example
    with open_context(loaded, project) as context:
        _edit_daily_revenue(loaded)
        context.load()
        first = build_plan(context, "prod")
        assert first.summary.directly_modified == {MODEL: "non_breaking"}
        tier = loaded.root / "examples" / "sqlmesh_project" / "models" / "tier_revenue.sql"
        tier.write_text(tier.read_text().replace("AS revenue", "AS revenue,\n  1 AS one"))
        context.load()
        apply_plan(context, build_plan(context, "prod"))
        with pytest.raises(EnvironmentChangedError, match=ENVIRONMENT_CHANGED):
            apply_plan(context, first)


@pytest.mark.timeout(240)
def test_a_refused_prod_plan_is_sqlmeshs_one_line_reason_naming_the_project(example):
    loaded, project, _ = example
    refused = _run(build_plan_job(loaded, project), start="2026-11-02", end="2026-11-03", auto_apply=True)
    message = _failure(refused)
    assert message.startswith("dagster._core.definitions.events.Failure: SQLMesh project 'sqlmesh_example': ")
    assert "The start and end dates can't be set for a production plan without restatements" in message
    assert "Traceback" not in message
