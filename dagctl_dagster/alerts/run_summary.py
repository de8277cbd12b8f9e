"""Per-run metrics from the event log: total duration and models executed / with nothing due /
skipped / blocked / failed, for the whole run or for one project's models.

Example::

    summary = summarize_run(instance, instance.get_run_record_by_id(run_id))
    summary.metadata()  # {"duration_s": 12.4, "executed": 6, "nothing_due": 3, "skipped": 1, ...}
    summarize_run(instance, record, ProjectModels("shop", frozenset({"shop/orders", ...})))

Counts are per model. They come from the claim-aware executor's own summary
(:class:`~dagctl_dagster.names.ExecutorSummary`; a run spanning projects has one per
project) when the run has one, else from the step events: a model its step materialized was
executed, one whose step succeeded without materializing it had nothing due; a failed step
counts the models it names (``failed_models`` / ``skipped_models``) or all it did not
materialize; a skipped step's models are skipped, a step that never started blocks its
models. A step with no model counts only when it fails, as one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import dagster as dg

from dagctl_dagster.names import (
    DURATION_TAG,
    FAILED_MODELS_KEY,
    MODELS_TAG_PREFIX,
    SKIPPED_MODELS_KEY,
    SUMMARY_PROJECT_KEY,
    ExecutorSummary,
    model_names,
)

COUNT_KEYS = ("executed", "nothing_due", "skipped", "blocked", "failed")
_STEP_EVENTS = {
    dg.DagsterEventType.STEP_SUCCESS,
    dg.DagsterEventType.STEP_FAILURE,
    dg.DagsterEventType.STEP_SKIPPED,
    dg.DagsterEventType.ENGINE_EVENT,
    dg.DagsterEventType.ASSET_MATERIALIZATION,
}
_OUTCOMES = {
    dg.DagsterEventType.STEP_SUCCESS: "success",
    dg.DagsterEventType.STEP_FAILURE: "failure",
    dg.DagsterEventType.STEP_SKIPPED: "skipped",
}


@dataclass(frozen=True)
class ProjectModels:
    """A project and its models' keys (``a/b``): what one project's summary counts."""

    name: str
    models: frozenset[str]


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    job_name: str
    status: str
    duration_s: float
    executed: int
    skipped: int
    blocked: int
    failed: int
    nothing_due: int = 0

    def metadata(self) -> dict[str, dg.MetadataValue]:
        values = asdict(self)
        return {
            "run_id": dg.MetadataValue.text(self.run_id),
            "job_name": dg.MetadataValue.text(self.job_name),
            "status": dg.MetadataValue.text(self.status),
            "duration_s": dg.MetadataValue.float(round(self.duration_s, 3)),
            **{key: dg.MetadataValue.int(values[key]) for key in COUNT_KEYS},
        }

    def run_tags(self) -> dict[str, str]:
        return {f"{MODELS_TAG_PREFIX}{key}": str(getattr(self, key)) for key in COUNT_KEYS} | {
            DURATION_TAG: f"{self.duration_s:.3f}"
        }


@dataclass
class _StepRecord:
    """What the event log says about one step."""

    outcome: str | None = None
    materialized: set[str] = field(default_factory=set)
    failed_models: list[str] | None = None
    skipped_models: list[str] = field(default_factory=list)


def summarize_run(
    instance: dg.DagsterInstance, record: dg.RunRecord, project: ProjectModels | None = None
) -> RunSummary:
    """The run's counts, or those of ``project``'s models."""
    run = record.dagster_run
    steps: dict[str, _StepRecord] = {}
    reported: dict[str | None, ExecutorSummary] = {}
    for event in _step_events(instance, run.run_id):
        if event.event_type == dg.DagsterEventType.ENGINE_EVENT:
            _read_executor_summary(event, reported)
        elif event.step_key:
            _record(steps.setdefault(event.step_key, _StepRecord()), event)
    own = _reported_for(reported, project)
    counts = _reported_counts(own) if own is not None else _counted(instance, run, steps, project)
    duration = (record.end_time or record.start_time or 0.0) - (record.start_time or record.end_time or 0.0)
    return RunSummary(
        run_id=run.run_id,
        job_name=run.job_name,
        status=run.status.value,
        duration_s=max(duration, 0.0),
        **{key: int(counts[key]) for key in COUNT_KEYS},
    )


def run_models(instance: dg.DagsterInstance, run: dg.DagsterRun) -> set[str]:
    """The models (asset keys ``a/b``) the run planned to materialize."""
    return {model for models in models_by_step(instance, run).values() for model in models}


def models_by_step(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dict[str, list[str]]:
    """Planned step → the asset keys it materializes (checks excluded)."""
    if not run.execution_plan_snapshot_id:
        return {key: [] for key in run.step_keys_to_execute or []}
    snapshot = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    planned = set(run.step_keys_to_execute or snapshot.step_keys_to_execute or [s.key for s in snapshot.steps])
    models: dict[str, list[str]] = {}
    for step in snapshot.steps:
        if step.key in planned:
            models[step.key] = [
                o.properties.asset_key.to_user_string()
                for o in step.outputs
                if o.properties is not None
                and o.properties.asset_key is not None
                and o.properties.asset_check_key is None
            ]
    return models


def _reported_for(
    reported: Mapping[str | None, ExecutorSummary], project: ProjectModels | None
) -> ExecutorSummary | None:
    """The project's own summary, else the run's when the run has no per-project ones."""
    if project is not None and project.name in reported:
        return reported[project.name]
    if project is not None and len(reported) > 1:
        return None
    return reported.get(None)


def _reported_counts(summary: ExecutorSummary) -> dict[str, int]:
    return {
        "executed": summary.executed,
        "nothing_due": summary.nothing_due,
        "failed": summary.failed,
        "blocked": summary.blocked,
        "skipped": summary.skipped,
    }


def _record(step: _StepRecord, event: dg.DagsterEvent) -> None:
    if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
        if event.asset_key is not None:
            step.materialized.add(event.asset_key.to_user_string())
        return
    step.outcome = _OUTCOMES[event.event_type]
    if event.event_type == dg.DagsterEventType.STEP_FAILURE:
        user_data = event.step_failure_data.user_failure_data
        metadata: Mapping[str, Any] = user_data.metadata if user_data is not None else {}
        if FAILED_MODELS_KEY in metadata:
            step.failed_models = model_names(metadata[FAILED_MODELS_KEY])
            step.skipped_models = model_names(metadata.get(SKIPPED_MODELS_KEY))


def _counted(
    instance: dg.DagsterInstance, run: dg.DagsterRun, steps: Mapping[str, _StepRecord], project: ProjectModels | None
) -> dict[str, int]:
    """Per-model counts from the step events, for runs without the executor's summary."""
    counts = dict.fromkeys(COUNT_KEYS, 0)
    planned = models_by_step(instance, run)
    for step_key in set(planned) | set(steps):
        models = {m for m in planned.get(step_key, []) if project is None or m in project.models}
        if project is not None and not models:
            continue
        step = steps.get(step_key, _StepRecord())
        done = step.materialized & models
        if step.outcome == "success":
            counts["executed"] += len(done)
            counts["nothing_due"] += len(models - done)
        elif step.outcome == "skipped":
            counts["skipped"] += len(models)
        elif step.outcome is None:
            counts["blocked"] += len(models)
        elif step.failed_models is not None:
            counts["executed"] += len(done)
            counts["failed"] += max(len(step.failed_models), 1)
            counts["blocked"] += len(step.skipped_models)
        else:
            counts["executed"] += len(done)
            counts["failed"] += max(len(models - done), 1)
    return counts


def _step_events(instance: dg.DagsterInstance, run_id: str) -> Iterator[dg.DagsterEvent]:
    cursor = None
    while True:
        connection = instance.get_records_for_run(run_id, cursor=cursor, of_type=_STEP_EVENTS, limit=1000)
        for record in connection.records:
            if record.event_log_entry.dagster_event is not None:
                yield record.event_log_entry.dagster_event
        if not connection.has_more:
            return
        cursor = connection.cursor


def _read_executor_summary(event: dg.DagsterEvent, reported: dict[str | None, ExecutorSummary]) -> None:
    metadata = getattr(event.event_specific_data, "metadata", None) or {}
    summary = ExecutorSummary.from_metadata(metadata)
    if summary is not None:
        project = getattr(metadata.get(SUMMARY_PROJECT_KEY), "value", metadata.get(SUMMARY_PROJECT_KEY))
        reported[project if isinstance(project, str) else None] = summary
