"""Per-run metrics from the event log: total duration and executed / skipped / blocked / failed models.

Example::

    summary = summarize_run(instance, instance.get_run_record_by_id(run_id))
    summary.metadata()  # {"duration_s": 12.4, "executed": 6, "skipped": 1, "blocked": 2, "failed": 1, ...}

Counts are per model. A step of a SQLMesh project is one model; a dbt project's step is one
``dbt build`` of many. Step outcomes come from the claim-aware executor's own summary
(:class:`~dagctl_dagster.names.ExecutorSummary`) when the run has one, else from the step
events (executed = succeeded, failed, skipped = reported skipped, blocked = planned but never
started). A step of several models then counts its models: on success all of them; on
failure the models it materialized as executed, the models its failure names
(``failed_models`` / ``skipped_models``) as failed / blocked, all of them when it names none.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import dagster as dg

from dagctl_dagster.names import (
    DURATION_TAG,
    FAILED_MODELS_KEY,
    MODELS_TAG_PREFIX,
    SKIPPED_MODELS_KEY,
    ExecutorSummary,
)

COUNT_KEYS = ("executed", "skipped", "blocked", "failed")
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
class RunSummary:
    run_id: str
    job_name: str
    status: str
    duration_s: float
    executed: int
    skipped: int
    blocked: int
    failed: int

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


def summarize_run(instance: dg.DagsterInstance, record: dg.RunRecord) -> RunSummary:
    run = record.dagster_run
    steps: dict[str, _StepRecord] = {}
    reported: ExecutorSummary | None = None
    for event in _step_events(instance, run.run_id):
        if event.event_type == dg.DagsterEventType.ENGINE_EVENT:
            reported = _executor_summary(event) or reported
        elif event.step_key:
            _record(steps.setdefault(event.step_key, _StepRecord()), event)
    models_by_step = _models_by_step(instance, run)
    counts = _step_counts(reported, steps, set(models_by_step) | set(steps))
    for step_key, models in models_by_step.items():
        if len(models) > 1:
            _count_models(counts, steps.get(step_key, _StepRecord()), len(models))
    duration = (record.end_time or record.start_time or 0.0) - (record.start_time or record.end_time or 0.0)
    return RunSummary(
        run_id=run.run_id,
        job_name=run.job_name,
        status=run.status.value,
        duration_s=max(duration, 0.0),
        **{key: int(counts[key]) for key in COUNT_KEYS},
    )


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
            step.failed_models = _names(metadata[FAILED_MODELS_KEY])
            step.skipped_models = _names(metadata.get(SKIPPED_MODELS_KEY))


def _step_counts(
    reported: ExecutorSummary | None, steps: Mapping[str, _StepRecord], planned: set[str]
) -> dict[str, int]:
    if reported is not None:
        return {
            "executed": reported.executed,
            "failed": reported.failed,
            "blocked": reported.blocked,
            "skipped": reported.skipped,
        }
    outcomes = [s.outcome for s in steps.values()]
    return {
        "executed": outcomes.count("success"),
        "failed": outcomes.count("failure"),
        "skipped": outcomes.count("skipped"),
        "blocked": len(planned - {k for k, s in steps.items() if s.outcome}),
    }


def _count_models(counts: dict[str, int], step: _StepRecord, model_count: int) -> None:
    """Turn one multi-model step's single count into its models' counts."""
    extra = model_count - 1
    if step.outcome == "success":
        counts["executed"] += extra
    elif step.outcome == "skipped":
        counts["skipped"] += extra
    elif step.outcome is None:
        counts["blocked"] += extra
    elif step.failed_models is None:
        counts["failed"] += extra
    else:
        counts["failed"] += len(step.failed_models) - 1
        counts["executed"] += len(step.materialized)
        counts["blocked"] += len(step.skipped_models)


def _names(value: Any) -> list[str]:
    raw = getattr(value, "value", value)
    if isinstance(raw, str):
        raw = json.loads(raw) if raw.startswith("[") else [n for n in raw.split(", ") if n]
    return [str(n) for n in raw or []]


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


def _executor_summary(event: dg.DagsterEvent) -> ExecutorSummary | None:
    metadata = getattr(event.event_specific_data, "metadata", None) or {}
    return ExecutorSummary.from_metadata(metadata)


def _models_by_step(instance: dg.DagsterInstance, run: dg.DagsterRun) -> dict[str, list[str]]:
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
