"""Freshness SLAs from each model's own schedule: the ``dagctl_freshness`` check and sensor.

A model is **late** when its last completed interval ends before the latest tick of its
cron that lies ``grace_minutes`` in the past: a daily model must have completed
``[yesterday, today)`` by ``00:00 + grace``. Each framework plugin gives a project's
:class:`~dagctl_dagster.project.FreshnessSource` (SQLMesh: interval records in state and each
model's own ``cron``, :mod:`dagctl_dagster.sqlmesh.freshness`; dbt: the model's last build
against its ``meta.dagctl.freshness`` or the project's schedule, :mod:`dagctl_dagster.dbt.freshness`).

The sensor ``dagctl_freshness`` (every ``freshness.check_interval_seconds``) records a
``dagctl_freshness`` asset check evaluation on each model whenever its verdict changes, so
the asset pages show late models as failed checks, and raises a ``late_model`` alert
(tier ``warning``, or ``page`` when the project's ``freshness.tier`` says so) through the
tiered alerts' delivery: once per model per cooldown. A run that plans the checks (a
"Materialize all" plans every check of its models; the UI's "Execute" only the checks)
evaluates them in that run the same way, after its model steps, reading SQLMesh state through
the run's own session (:meth:`~dagctl_dagster.project.FreshnessSource.schedules_in_run`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from dagctl_dagster.alerts import rules
from dagctl_dagster.alerts.cursor import AlertCursor
from dagctl_dagster.alerts.projects import ProjectLookup
from dagctl_dagster.alerts.sender import AlertResource
from dagctl_dagster.config import FreshnessConfig, ProjectConfig
from dagctl_dagster.execution.dagster_adapter import latest_check_results
from dagctl_dagster.names import FRESHNESS_CHECK_NAME, FRESHNESS_DUE_KEY, FRESHNESS_LAST_END_KEY, PROJECT_TAG
from dagctl_dagster.project import FreshnessSource, ModelSchedule
from dagctl_dagster.run_identity import FRESHNESS_SENSOR, project_op_name


@dataclass(frozen=True)
class Verdict:
    key: dg.AssetKey
    late: bool
    due_end: datetime
    last_end: datetime | None
    description: str


def due_end(cron: str, timezone: str, now: datetime, grace: timedelta) -> datetime:
    """The latest tick of ``cron`` at or before ``now - grace``: the end the last completed
    interval must have reached by now."""
    from croniter import croniter

    local = (now - grace).astimezone(ZoneInfo(timezone))
    iterator = croniter(cron, local + timedelta(microseconds=1))
    return iterator.get_prev(datetime).astimezone(UTC)


def judge(schedule: ModelSchedule, settings: FreshnessConfig, now: datetime) -> Verdict:
    grace = timedelta(minutes=schedule.grace_minutes if schedule.grace_minutes is not None else settings.grace_minutes)
    due = due_end(schedule.cron, schedule.timezone, now, grace)
    model = schedule.key.to_user_string()
    if schedule.last_end is None:
        return Verdict(
            schedule.key, True, due, None, f"{model} has no completed interval; due by {due:%Y-%m-%d %H:%M} UTC"
        )
    if schedule.last_end < due:
        return Verdict(
            schedule.key,
            True,
            due,
            schedule.last_end,
            f"{model} is late: its last completed interval ends {schedule.last_end:%Y-%m-%d %H:%M} UTC, "
            f"the interval ending {due:%Y-%m-%d %H:%M} UTC was due (cron '{schedule.cron}', grace {grace})",
        )
    return Verdict(
        schedule.key,
        False,
        due,
        schedule.last_end,
        f"{model} is fresh: complete up to {schedule.last_end:%Y-%m-%d %H:%M} UTC",
    )


@dataclass(frozen=True)
class ProjectFreshness:
    """One project's freshness source, by the project's name."""

    name: str
    project: ProjectConfig
    source: FreshnessSource

    @property
    def check_keys(self) -> list[dg.AssetKey]:
        return self.source.check_keys


def evaluate(
    source: ProjectFreshness, settings: FreshnessConfig, instance: dg.DagsterInstance, now: datetime
) -> list[Verdict]:
    return [judge(schedule, settings, now) for schedule in source.source.schedules(instance)]


def check_evaluation(verdict: Verdict, settings: FreshnessConfig) -> dg.AssetCheckEvaluation:
    return dg.AssetCheckEvaluation(
        asset_key=verdict.key,
        check_name=FRESHNESS_CHECK_NAME,
        passed=not verdict.late,
        severity=_severity(settings),
        description=verdict.description,
        metadata=_metadata(verdict),
    )


def _severity(settings: FreshnessConfig) -> dg.AssetCheckSeverity:
    return dg.AssetCheckSeverity.ERROR if settings.tier == "page" else dg.AssetCheckSeverity.WARN


def _metadata(verdict: Verdict) -> dict[str, dg.RawMetadataValue]:
    metadata: dict[str, dg.RawMetadataValue] = {FRESHNESS_DUE_KEY: dg.MetadataValue.timestamp(verdict.due_end)}
    if verdict.last_end is not None:
        metadata[FRESHNESS_LAST_END_KEY] = dg.MetadataValue.timestamp(verdict.last_end)
    return metadata


# -- checks and sensor -----------------------------------------------------------------


def freshness_checks(source: ProjectFreshness, settings: FreshnessConfig) -> dg.AssetChecksDefinition | None:
    """The ``dagctl_freshness`` check of every model of the project that has an SLA.

    The sensor records its evaluations. A run that plans the checks evaluates them itself,
    after its model steps: "Materialize all" plans every check of the selected models, the
    UI's "Execute" only the checks. ``<project>_run`` jobs do not select them.
    """
    keys = source.check_keys
    if not keys:
        return None
    specs = [
        dg.AssetCheckSpec(
            FRESHNESS_CHECK_NAME, asset=key, blocking=False, description="Freshness SLA from the model's schedule"
        )
        for key in keys
    ]

    @dg.multi_asset_check(
        specs=specs,
        can_subset=True,
        name=project_op_name(source.name, "freshness"),
        required_resource_keys=set(source.source.run_resource_keys),
    )
    def _checks(context) -> Iterator[dg.AssetCheckResult]:  # no hint: dagster cannot resolve postponed ones here
        selected = {key.asset_key for key in context.selected_asset_check_keys}
        schedules = source.source.schedules_in_run(context.resources, context.instance)
        now = datetime.now(UTC)
        for schedule in schedules:
            if schedule.key in selected:
                selected.discard(schedule.key)
                yield check_result(check_evaluation(judge(schedule, settings, now), settings))
        for key in sorted(selected, key=lambda k: k.to_user_string()):  # planned, but the framework has no record
            yield dg.AssetCheckResult(
                asset_key=key,
                check_name=FRESHNESS_CHECK_NAME,
                passed=False,
                severity=_severity(settings),
                description=f"{key.to_user_string()} has no schedule or interval in its project's state "
                "(not deployed yet?)",
            )

    return _checks


def check_result(evaluation: dg.AssetCheckEvaluation) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=evaluation.asset_key,
        check_name=evaluation.check_name,
        passed=evaluation.passed,
        severity=evaluation.severity,
        description=evaluation.description,
        metadata=evaluation.metadata,
    )


@dataclass
class FreshnessCursor:
    alerts: AlertCursor

    @classmethod
    def parse(cls, raw: str | None) -> FreshnessCursor:
        data = json.loads(raw) if raw else {}
        return cls(AlertCursor.parse(data.get("alerts")))

    def serialize(self) -> str:
        return json.dumps({"alerts": self.alerts.serialize()}, sort_keys=True)


def freshness_sensor(
    sources: Sequence[ProjectFreshness], lookup: ProjectLookup, interval_s: int, default_status
) -> dg.SensorDefinition:
    @dg.sensor(
        name=FRESHNESS_SENSOR,
        description="Evaluates every model's freshness SLA; late models fail their dagctl_freshness check and alert.",
        minimum_interval_seconds=interval_s,
        default_status=default_status,
    )
    def _sensor(context: dg.SensorEvaluationContext, slack: AlertResource) -> dg.SensorResult:
        from dagctl_dagster.alerts.tiered import deliver_alerts

        cursor = FreshnessCursor.parse(context.cursor)
        now = time.time()
        alerts: list[rules.Alert] = []
        for source in sources:
            settings = lookup.config.freshness_for(source.project)
            if source.source.locked_by_runs and _has_run_in_progress(context.instance, source.name):
                context.log.info(f"project '{source.name}' has a run in progress; its freshness is evaluated next tick")
                continue
            try:
                verdicts = evaluate(source, settings, context.instance, datetime.fromtimestamp(now, UTC))
            except Exception as exc:  # state unreachable or locked: the next tick tries again
                context.log.warning(
                    f"freshness of project '{source.name}' not evaluated this tick: {type(exc).__name__}: {exc}"
                )
                continue
            # Recorded when the verdict differs from what the asset page shows now, which a run
            # that executed the checks may have recorded since this sensor's last tick.
            shown = latest_check_results(
                context.instance, [dg.AssetCheckKey(v.key, FRESHNESS_CHECK_NAME) for v in verdicts]
            )
            for verdict in verdicts:
                model = verdict.key.to_user_string()
                if shown.get(dg.AssetCheckKey(verdict.key, FRESHNESS_CHECK_NAME)) != (not verdict.late):
                    context.instance.report_runless_asset_event(check_evaluation(verdict, settings))
                if verdict.late:
                    alerts.append(rules.late_model(source.name, settings.tier, model, verdict.description))
        deliver_alerts(context, lookup, cursor.alerts, alerts, slack, now)
        return dg.SensorResult(cursor=cursor.serialize())

    return _sensor


def _has_run_in_progress(instance: dg.DagsterInstance, project: str) -> bool:
    """A run of the project holds its state database (DuckDB: one process at a time)."""
    in_progress = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]
    return bool(instance.get_run_records(dg.RunsFilter(tags={PROJECT_TAG: project}, statuses=in_progress), limit=1))


def build_freshness(
    location, lookup: ProjectLookup
) -> tuple[list[dg.AssetChecksDefinition], list[dg.SensorDefinition]]:
    """The checks and the sensor of every project whose freshness is enabled."""
    from dagctl_dagster.settings import sensor_default_status

    config = location.loaded.config
    sources = []
    checks = []
    for project_defs in location.projects:
        settings = config.freshness_for(project_defs.project)
        if not settings.enabled:
            continue
        if project_defs.freshness is None:
            continue
        source = ProjectFreshness(project_defs.name, project_defs.project, project_defs.freshness)
        definition = freshness_checks(source, settings)
        if definition is not None:
            sources.append(source)
            checks.append(definition)
    if not sources:
        return [], []
    sensor = freshness_sensor(sources, lookup, config.freshness.check_interval_seconds, sensor_default_status())
    return checks, [sensor]
