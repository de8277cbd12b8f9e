"""Producers and consumers of shared names agree: the executor's run summary and the alert
side's reading of it; the plan job's ``applied`` metadata and the "applied in prod" alert; a
model step's outcome and the failure reasons the executor and the hooks read; the framework
sessions and the protocol the executor asks them by; the tags and keys of ``names``."""

from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import dagster as dg
import pytest
from dagster import DagsterInstance
from projects import executor_jobs

from dagctl_dagster import names
from dagctl_dagster.alerts import hooks, rules
from dagctl_dagster.alerts.run_summary import summarize_run
from dagctl_dagster.alerts.tiered import plan_outcome
from dagctl_dagster.config import load_config
from dagctl_dagster.execution.executor import RUN_SUMMARY_MESSAGE
from dagctl_dagster.execution.framework import RunFramework
from dagctl_dagster.names import ExecutorSummary, NotRunReason
from dagctl_dagster.run_identity import JobKind, op_name
from dagctl_dagster.sqlmesh.asset_factory import _raise_unless_done
from dagctl_dagster.sqlmesh.plan import build_plan_job
from dagctl_dagster.sqlmesh.session import ModelOutcome, ModelStatus

PACKAGE = Path(names.__file__).resolve().parent
# The statuses a model step reports as a success; every other one must fail the step.
DONE = {ModelStatus.EVALUATED, ModelStatus.NOTHING_DUE}


@pytest.mark.timeout(180)
def test_run_summary_reads_the_executors_own_summary(tmp_path: Path, dagster_home: Path, monkeypatch):
    monkeypatch.setenv("DAGCTL_TEST_RECORD", str(tmp_path / "record.jsonl"))
    monkeypatch.setenv("DAGCTL_TEST_SLEEP", "0")
    monkeypatch.setenv("DAGCTL_TEST_FAIL", "bad")
    monkeypatch.delenv("DAGCTL_TEST_FLAKY", raising=False)
    with DagsterInstance.get() as instance:
        result = dg.execute_job(dg.reconstructable(executor_jobs.get_failure_job), instance, raise_on_error=False)
        summary = summarize_run(instance, instance.get_run_record_by_id(result.run_id))

    event = next(e for e in result.all_events if (e.message or "").startswith(RUN_SUMMARY_MESSAGE))
    reported = ExecutorSummary.from_metadata(event.event_specific_data.metadata)
    assert reported is not None, "the executor's summary no longer matches ExecutorSummary"
    assert (reported.executed, reported.failed, reported.blocked, reported.skipped) == (4, 1, 2, 0)
    assert (summary.executed, summary.failed, summary.blocked, summary.skipped) == (4, 1, 2, 0)
    assert summary.run_tags()["dagctl/models_failed"] == "1"


def test_executor_summary_is_not_read_from_other_engine_events():
    assert ExecutorSummary.from_metadata({"claimed": 3, "held_elsewhere": 0}) is None
    assert ExecutorSummary.from_metadata({"executed": 1, "skipped": 0, "blocked": 0, "failed": 0}) is None


@pytest.mark.timeout(240)
def test_applied_in_prod_follows_what_the_plan_did(example_repo: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("SQLMESH_EXAMPLE_DB", str(tmp_path / "warehouse.duckdb"))
    loaded = load_config(example_repo / ".dagctl" / "config.yaml")
    project = loaded.config.project("sqlmesh_example")
    job = build_plan_job(loaded, project)
    with dg.instance_for_test() as instance:
        dry = job.execute_in_process(
            instance=instance, run_config={"ops": {op_name(project, JobKind.PLAN): {"config": {}}}}
        )
        applied = job.execute_in_process(
            instance=instance, run_config={"ops": {op_name(project, JobKind.PLAN): {"config": {"auto_apply": True}}}}
        )
        dry_outcome = plan_outcome(instance, dry.run_id)
        applied_outcome = plan_outcome(instance, applied.run_id)
        dry_run = instance.get_run_by_id(dry.run_id)
        applied_run = instance.get_run_by_id(applied.run_id)

    assert dry_outcome == rules.PlanOutcome(applied=False, environment="prod")
    assert applied_outcome == rules.PlanOutcome(applied=True, environment="prod")
    assert rules.informational(project.name, JobKind.PLAN, dry_run, "prod", dry_outcome) is None
    alert = rules.informational(project.name, JobKind.PLAN, applied_run, "prod", applied_outcome)
    assert alert is not None and alert.summary == f"plan run {job.name} applied in prod"


@pytest.mark.timeout(240)
def test_every_project_job_and_schedule_is_named_by_run_identity(example_repo: Path, tmp_path: Path, monkeypatch):
    """The names load_definitions gives and the rule that reads a run's project agree."""
    from dagctl_dagster import load_definitions
    from dagctl_dagster.names import PROJECT_TAG
    from dagctl_dagster.run_identity import JobKind, job_name, project_of_run, schedule_name

    monkeypatch.setenv("SQLMESH_EXAMPLE_DB", str(tmp_path / "warehouse.duckdb"))
    loaded = load_config(example_repo / ".dagctl" / "config.yaml")
    repository = load_definitions(loaded.path).get_repository_def()

    project_jobs = [job for job in repository.get_all_jobs() if PROJECT_TAG in job.tags]
    assert project_jobs
    for job in project_jobs:
        match = project_of_run(loaded.config, job.name, job.tags)
        assert match.project is not None and match.project.name == job.tags[PROJECT_TAG], job.name
        assert match.kind is not None and job.name == job_name(match.project, match.kind), job.name
    for project in loaded.projects:
        assert repository.has_job(job_name(project, JobKind.RUN))
    schedules = {schedule.name for schedule in repository.schedule_defs}
    assert {schedule_name(p, JobKind.RUN) for p in loaded.projects if p.effective_schedule} <= schedules


def test_a_runs_project_is_its_tag_and_an_unknown_tag_is_reported(example_repo: Path):
    from dagctl_dagster.names import PROJECT_TAG
    from dagctl_dagster.run_identity import JobKind, project_of_run

    config = load_config(example_repo / ".dagctl" / "config.yaml").config
    name = config.projects[0].name
    assert project_of_run(config, "any_job", {PROJECT_TAG: name}).project == config.projects[0]
    assert project_of_run(config, f"{name}_plan", {}).kind is JobKind.PLAN
    assert project_of_run(config, f"{name}_custom", {}).kind is None  # a user's job beside ours
    unknown = project_of_run(config, f"{name}_run", {PROJECT_TAG: "nope"})
    assert (unknown.project, unknown.unknown_tag) == (None, "nope")
    assert project_of_run(config, "unrelated", {}).project is None


def test_every_not_run_reason_is_counted_in_the_summary_and_read_back():
    """The executor counts each reason as ``not_run_<reason>``; the alert side reads them back."""
    counts = {f"not_run_{reason.value}": number for number, reason in enumerate(NotRunReason, start=1)}
    assert set(counts) <= {f.name for f in fields(ExecutorSummary)}, "a NotRunReason has no summary count"
    written = ExecutorSummary(1.5, 4, 1, 2, 0, 0, 0, not_run=sum(counts.values()), **counts)
    assert ExecutorSummary.from_metadata(written.metadata()) == written


@pytest.mark.parametrize("status", list(ModelStatus), ids=lambda status: status.value)
def test_each_model_status_is_done_or_a_failure_the_alerts_can_classify(status: ModelStatus, example_repo: Path):
    """What the SQLMesh session reports, the asset factory turns into success or a typed failure."""
    project = load_config(example_repo / ".dagctl" / "config.yaml").config.project("sqlmesh_example")
    outcome = ModelOutcome("db.model", status, error="boom")
    if status in DONE:
        _raise_unless_done(outcome, "db.model", project)
        return
    with pytest.raises(dg.Failure) as failure:
        _raise_unless_done(outcome, "db.model", project)
        pytest.fail(f"model status {status.value} is neither done nor a failure")
    reason = hooks.not_run_reason(failure.value)
    if status is ModelStatus.FAILED:
        assert reason is None, "a failed model is a failure, not a model left unrun"
    else:
        assert reason in {r.value for r in NotRunReason}, f"{status.value} fails with no reason the executor reads"


@pytest.mark.timeout(240)
def test_each_sqlmesh_run_job_carries_a_framework_session_the_executor_finds(
    example_repo: Path, tmp_path: Path, monkeypatch
):
    """The executor asks the run's resources that are a RunFramework; each SQLMesh run job has one."""
    from dagctl_dagster import load_definitions
    from dagctl_dagster.run_identity import job_name

    monkeypatch.setenv("SQLMESH_EXAMPLE_DB", str(tmp_path / "warehouse.duckdb"))
    loaded = load_config(example_repo / ".dagctl" / "config.yaml")
    repository = load_definitions(loaded.path).get_repository_def()
    projects = [p for p in loaded.projects if p.framework == "sqlmesh"]
    assert projects
    for project in projects:
        job = repository.get_job(job_name(project, JobKind.RUN))
        with dg.build_resources(job.resource_defs) as resources:
            instances = [getattr(resources, key) for key in job.resource_defs]
        assert [f for f in instances if isinstance(f, RunFramework) and project.name in f.projects], job.name


def test_namespaced_tags_and_keys_are_spelled_only_in_names():
    """A tag or key spelled out a second time can drift from the one its reader imports."""
    spelled = {v: k for k, v in vars(names).items() if k.isupper() and isinstance(v, str) and "/" in v}
    assert spelled
    repeats = [
        f"{path.relative_to(PACKAGE)}:{node.lineno} {node.value!r} (names.{spelled[node.value]})"
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "names.py"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and node.value in spelled
    ]
    assert not repeats, repeats
