"""Per-run metrics from the event log: total duration and executed / skipped / blocked / failed models.

Example::

    summary = summarize_run(instance, instance.get_run_record_by_id(run_id))
    summary.metadata()  # {"duration_s": 12.4, "executed": 6, "skipped": 1, "blocked": 2, "failed": 1, ...}

Counts are per step (one step per model). When the claim-aware executor reports its own
summary (an engine event whose metadata holds ``executed``/``skipped``/``blocked``/``failed``),
its numbers win; otherwise: executed = steps that succeeded, failed = steps that failed,
skipped = steps Dagster or the executor reported as skipped (claimed by another run, nothing
due), blocked = planned steps that never started because an upstream failed.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass

import dagster as dg

COUNT_KEYS = ("executed", "skipped", "blocked", "failed")
_STEP_EVENTS = {
    dg.DagsterEventType.STEP_SUCCESS,
    dg.DagsterEventType.STEP_FAILURE,
    dg.DagsterEventType.STEP_SKIPPED,
    dg.DagsterEventType.ENGINE_EVENT,
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
        return {f"dagctl/models_{key}": str(getattr(self, key)) for key in COUNT_KEYS} | {
            "dagctl/duration_s": f"{self.duration_s:.3f}"
        }


def summarize_run(instance: dg.DagsterInstance, record: dg.RunRecord) -> RunSummary:
    run = record.dagster_run
    outcomes: dict[str, set[str]] = {"success": set(), "failure": set(), "skipped": set()}
    reported: dict[str, int] | None = None
    for event in _step_events(instance, run.run_id):
        if event.event_type == dg.DagsterEventType.ENGINE_EVENT:
            reported = _executor_summary(event) or reported
        elif event.step_key:
            kind = {
                dg.DagsterEventType.STEP_SUCCESS: "success",
                dg.DagsterEventType.STEP_FAILURE: "failure",
                dg.DagsterEventType.STEP_SKIPPED: "skipped",
            }[event.event_type]
            outcomes[kind].add(event.step_key)
    duration = (record.end_time or record.start_time or 0.0) - (record.start_time or record.end_time or 0.0)
    if reported is not None:
        counts = reported
    else:
        planned = _planned_steps(instance, run) | set().union(*outcomes.values())
        counts = {
            "executed": len(outcomes["success"]),
            "failed": len(outcomes["failure"]),
            "skipped": len(outcomes["skipped"] - outcomes["success"] - outcomes["failure"]),
            "blocked": len(planned - set().union(*outcomes.values())),
        }
    return RunSummary(
        run_id=run.run_id,
        job_name=run.job_name,
        status=run.status.value,
        duration_s=max(duration, 0.0),
        **{key: int(counts[key]) for key in COUNT_KEYS},
    )


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


def _executor_summary(event: dg.DagsterEvent) -> dict[str, int] | None:
    metadata = getattr(event.event_specific_data, "metadata", None) or {}
    values = {key: getattr(metadata.get(key), "value", None) for key in COUNT_KEYS}
    if all(isinstance(value, int) for value in values.values()):
        return values  # type: ignore[return-value]
    return None


def _planned_steps(instance: dg.DagsterInstance, run: dg.DagsterRun) -> set[str]:
    if run.step_keys_to_execute:
        return set(run.step_keys_to_execute)
    if not run.execution_plan_snapshot_id:
        return set()
    snapshot = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    keys = snapshot.step_keys_to_execute or [step.key for step in snapshot.steps]
    return set(keys)
