"""The tier rules of the SQLMesh production runbook, each over Dagster's own records.

==========  ==============================================================================
page        a scheduled run failed after its retries; the SQLMesh state database unreachable
warning     a model is late for its freshness SLA (``page`` when the project's freshness tier
            says so);
            a run took more than ``run_duration_factor`` × the rolling average of its job's
            successful runs; a model took more than ``model_duration_factor`` × its average;
            the state database grew more than ``state_growth_ratio`` week over week
info        a backfill applied in prod; a janitor run completed
==========  ==============================================================================

Each rule returns an :class:`Alert` or ``None``; averages need ``min_history`` earlier
values within ``history_days``, so a new job or model is never "slow".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

import dagster as dg

from dagctl_dagster.config import AlertThresholds
from dagctl_dagster.names import MODEL_DURATION_KEYS
from dagctl_dagster.run_identity import JobKind

SCHEDULE_NAME_TAG = "dagster/schedule_name"
BACKFILL_ID_TAG = "dagster/backfill"
MAX_RETRIES_TAG = "dagster/max_retries"
RETRY_NUMBER_TAG = "dagster/retry_number"
WILL_RETRY_TAG = "dagster/will_retry"

# SQLMesh materializations report `duration_s`, dbt's dagster-dbt's `Execution Duration`.
DURATION_KEYS = MODEL_DURATION_KEYS
STATE_SIZE_KEY = "size_bytes"
STATE_REACHABLE_KEY = "reachable"
_DAY_S = 24 * 3600


@dataclass(frozen=True)
class Alert:
    tier: str  # "page" | "warning" | "info"
    project: str
    cause: str  # what the cooldown is keyed on: one cause posts at most once per window
    summary: str
    run_id: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)


def retries_exhausted(tags: dict[str, str] | Any) -> bool:
    """No automatic retry of this failed run will follow."""
    will_retry = tags.get(WILL_RETRY_TAG)
    if will_retry is not None:
        return will_retry == "false"
    return int(tags.get(RETRY_NUMBER_TAG, 0)) >= int(tags.get(MAX_RETRIES_TAG, 0))


def scheduled_run_failed(project: str, run: dg.DagsterRun) -> Alert | None:
    schedule = run.tags.get(SCHEDULE_NAME_TAG)
    if schedule is None or not retries_exhausted(run.tags):
        return None
    attempts = int(run.tags.get(RETRY_NUMBER_TAG, 0)) + 1
    return Alert(
        tier="page",
        project=project,
        cause=f"page:scheduled_run_failed:{run.job_name}",
        summary=f"scheduled run of {run.job_name} (schedule {schedule}) failed after {attempts} attempt(s)",
        run_id=run.run_id,
        facts={"job": run.job_name, "attempts": attempts},
    )


def slow_run(
    project: str, instance: dg.DagsterInstance, record: dg.RunRecord, thresholds: AlertThresholds
) -> Alert | None:
    run = record.dagster_run
    duration = _duration(record)
    if duration is None or record.end_time is None:
        return None
    end_time = record.end_time
    since = end_time - thresholds.history_days * _DAY_S
    history = instance.get_run_records(
        dg.RunsFilter(job_name=run.job_name, statuses=[dg.DagsterRunStatus.SUCCESS]), limit=500
    )
    earlier = [
        d
        for r in history
        if r.dagster_run.run_id != run.run_id
        and (d := _duration(r)) is not None
        and r.end_time is not None
        and since <= r.end_time <= end_time
    ]
    if len(earlier) < thresholds.min_history:
        return None
    average = fmean(earlier)
    if duration <= thresholds.run_duration_factor * average:
        return None
    return Alert(
        tier="warning",
        project=project,
        cause=f"warning:slow_run:{run.job_name}",
        summary=f"run of {run.job_name} took {duration:.0f}s, {duration / average:.1f}× the "
        f"{thresholds.history_days}-day average of {average:.0f}s ({len(earlier)} successful runs)",
        run_id=run.run_id,
        facts={"duration_s": duration, "average_s": average},
    )


def slow_model(
    project: str, instance: dg.DagsterInstance, record: dg.EventLogRecord, thresholds: AlertThresholds
) -> Alert | None:
    duration = _duration_of(record)
    key = record.asset_key
    if duration is None or key is None:
        return None
    history = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=key,
            before_storage_id=record.storage_id,
            after_timestamp=record.timestamp - thresholds.history_days * _DAY_S,
        ),
        limit=100,
    ).records
    earlier = [d for r in history if (d := _duration_of(r)) is not None]
    if len(earlier) < thresholds.min_history:
        return None
    average = fmean(earlier)
    if average <= 0 or duration <= thresholds.model_duration_factor * average:
        return None
    model = key.to_user_string()
    return Alert(
        tier="warning",
        project=project,
        cause=f"warning:slow_model:{model}",
        summary=f"model {model} took {duration:.1f}s, {duration / average:.1f}× its average of "
        f"{average:.1f}s over {len(earlier)} materializations",
        run_id=record.run_id or None,
        facts={"model": model, "duration_s": duration, "average_s": average},
    )


def state_unreachable(project: str, record: dg.EventLogRecord) -> Alert | None:
    metadata = _metadata(record)
    reachable = metadata.get(STATE_REACHABLE_KEY)
    if reachable is None or getattr(reachable, "value", reachable):
        return None
    error = getattr(metadata.get("error"), "value", "") or "no error message"
    return Alert(
        tier="page",
        project=project,
        cause=f"page:state_unreachable:{project}",
        summary=f"SQLMesh state database unreachable: {error}",
    )


def state_growth(
    project: str, instance: dg.DagsterInstance, record: dg.EventLogRecord, thresholds: AlertThresholds
) -> Alert | None:
    size = _number(record, STATE_SIZE_KEY)
    if size is None or record.asset_key is None:
        return None
    week = 7 * _DAY_S
    earlier = instance.fetch_observations(
        dg.AssetRecordsFilter(
            asset_key=record.asset_key,
            before_timestamp=record.timestamp - week,
            after_timestamp=record.timestamp - 2 * week,
        ),
        limit=1,
    ).records
    baseline = _number(earlier[0], STATE_SIZE_KEY) if earlier else None
    if not baseline:
        return None
    growth = size / baseline - 1
    if growth <= thresholds.state_growth_ratio:
        return None
    return Alert(
        tier="warning",
        project=project,
        cause=f"warning:state_growth:{project}",
        summary=f"SQLMesh state database grew {growth:.0%} in a week ({baseline:,.0f} → {size:,.0f} bytes)",
        facts={"size_bytes": size, "baseline_bytes": baseline},
    )


@dataclass(frozen=True)
class PlanOutcome:
    """What a `<project>_plan` run reported in its output metadata."""

    applied: bool
    environment: str | None


def informational(
    project: str, job_kind: JobKind | None, run: dg.DagsterRun, environment: str, plan: PlanOutcome | None = None
) -> Alert | None:
    """Janitor runs; Dagster backfills of a prod project; plans that were applied to prod.

    A plan counts only when its own metadata says it was applied (a dry run does not), to
    the environment it names.
    """
    if job_kind is JobKind.JANITOR:
        return Alert(
            "info", project, f"info:janitor:{run.run_id}", f"janitor run of {run.job_name} completed", run.run_id
        )
    backfill = run.tags.get(BACKFILL_ID_TAG)
    if backfill and environment == "prod":
        return Alert("info", project, f"info:backfill:{run.run_id}", f"backfill {backfill} applied in prod", run.run_id)
    if plan is not None and plan.applied and (plan.environment or environment) == "prod":
        return Alert(
            "info", project, f"info:backfill:{run.run_id}", f"plan run {run.job_name} applied in prod", run.run_id
        )
    return None


def _duration(record: dg.RunRecord) -> float | None:
    if record.start_time is None or record.end_time is None:
        return None
    return record.end_time - record.start_time


def _metadata(record: dg.EventLogRecord) -> dict[str, Any]:
    event = record.asset_materialization or record.asset_observation
    return dict(event.metadata) if event is not None else {}


def _duration_of(record: dg.EventLogRecord) -> float | None:
    return next((d for key in DURATION_KEYS if (d := _number(record, key)) is not None), None)


def _number(record: dg.EventLogRecord, key: str) -> float | None:
    value = getattr(_metadata(record).get(key), "value", None)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def late_model(project: str, tier: str, model: str, summary: str) -> Alert:
    """A model whose last completed interval is older than its cron and grace allow."""
    return Alert(
        tier=tier, project=project, cause=f"{tier}:late_model:{model}", summary=summary, facts={"model": model}
    )
