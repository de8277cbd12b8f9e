"""The tiered-alert sensor: reads new run, materialization and state-size records, applies
:mod:`~dagctl_dagster.alerts.rules`, posts per tier with a cooldown, and records every
alert and every run summary in Dagster.

Example::

    sensor = tiered_alert_sensor(lookup, model_keys={"analytics": [...]}, state_keys={...})
    defs = dg.Definitions(sensors=[sensor], resources={"slack": DagctlSlackResource()})

Recorded in Dagster (whether or not Slack is configured): each alert as an observation of
``["dagctl", <project>, "alerts"]`` (tier, cause, summary) and each finished ``<project>_run``
as an observation of ``["dagctl", <project>, "runs"]`` (duration, executed / skipped / blocked /
failed models) plus run tags ``dagctl/models_*``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from dagctl_dagster.alerts import rules
from dagctl_dagster.alerts.cost import costly_model, run_cost
from dagctl_dagster.alerts.cursor import AlertCursor
from dagctl_dagster.alerts.messages import tier_alert_text
from dagctl_dagster.alerts.projects import ProjectLookup
from dagctl_dagster.alerts.run_summary import ProjectModels, RunSummary, run_models, summarize_run
from dagctl_dagster.alerts.sender import AlertResource, AlertSender
from dagctl_dagster.alerts.state_size import state_key, state_size_metadata
from dagctl_dagster.names import OBSERVABILITY_PREFIX, PLAN_APPLIED_KEY, PLAN_ENVIRONMENT_KEY
from dagctl_dagster.project import StateSize
from dagctl_dagster.run_identity import TIERED_ALERTS_SENSOR, JobKind, RunProject
from dagctl_dagster.secrets import redact

# Without a cursor (first tick), only this recent past is alerted on.
FIRST_TICK_LOOKBACK_S = 3600
_PAGE = 500


def alerts_key(project: str) -> dg.AssetKey:
    return dg.AssetKey([OBSERVABILITY_PREFIX, project, "alerts"])


def runs_key(project: str) -> dg.AssetKey:
    return dg.AssetKey([OBSERVABILITY_PREFIX, project, "runs"])


def tiered_alert_sensor(
    projects: ProjectLookup,
    model_keys: Mapping[str, Sequence[dg.AssetKey]],
    state_keys: Mapping[str, dg.AssetKey],
    *,
    state_probes: Mapping[str, Callable[[], StateSize]] | None = None,
    minimum_interval_seconds: int = 60,
) -> dg.SensorDefinition:
    """One sensor for the code location; its cursor holds the read position and cooldowns.

    Every finished run that included models of a project (its ``<project>_run``, a
    "Materialize all", any selection across projects) is recorded on that project's
    ``dagctl/<project>/runs`` with that project's counts, and its state database observed
    on ``dagctl/<project>/sqlmesh_state`` when ``state_probes`` has the project.
    """
    included = _RunProjects(
        {p: frozenset(k.to_user_string() for k in keys) for p, keys in model_keys.items()}, state_probes or {}
    )

    @dg.sensor(
        name=TIERED_ALERTS_SENSOR,
        description="Page / warning / info alerts of the SQLMesh production runbook, and run summaries.",
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
    )
    def _sensor(context: dg.SensorEvaluationContext, slack: AlertResource) -> dg.SensorResult:
        cursor = AlertCursor.parse(context.cursor)
        evaluation = _Evaluation(context, projects, cursor, time.time(), included)
        evaluation.finished_runs()
        for project, keys in model_keys.items():
            for key in keys:
                evaluation.materializations(project, key)
        for project, key in state_keys.items():
            evaluation.state_observations(project, key)
        evaluation.deliver(slack)
        if cursor.storage_id is None:  # nothing recorded yet: read from the start next time
            cursor.storage_id = 0
        return dg.SensorResult(cursor=cursor.serialize())

    return _sensor


@dataclass(frozen=True)
class _RunProjects:
    """Each project's models, to tell which projects a run included, and its state probe."""

    models: Mapping[str, frozenset[str]]
    state_probes: Mapping[str, Callable[[], StateSize]]

    def of_run(self, instance: dg.DagsterInstance, run: dg.DagsterRun, tagged: RunProject) -> list[str]:
        planned = run_models(instance, run)
        found = [project for project, models in self.models.items() if models & planned]
        if tagged.project is not None and tagged.kind is JobKind.RUN and tagged.project.name not in found:
            found.append(tagged.project.name)
        return found


class _Evaluation:
    def __init__(
        self,
        context: dg.SensorEvaluationContext,
        projects: ProjectLookup,
        cursor: AlertCursor,
        now: float,
        included: _RunProjects,
    ):
        self.included = included
        self.context = context
        self.instance = context.instance
        self.projects = projects
        self.cursor = cursor
        self.start_storage_id = cursor.storage_id
        self.now = now
        self.alerts: list[rules.Alert] = []

    def finished_runs(self) -> None:
        for event_type in (dg.DagsterEventType.RUN_SUCCESS, dg.DagsterEventType.RUN_FAILURE):
            for record in self._new_records(
                self.instance.fetch_run_status_changes,
                lambda after, t=event_type: dg.RunStatusChangeRecordsFilter(t, after_storage_id=after),
            ):
                self._finished_run(record.run_id, event_type)

    def _finished_run(self, run_id: str, event_type: dg.DagsterEventType) -> None:
        run_record = self.instance.get_run_record_by_id(run_id)
        if run_record is None:
            return
        run = run_record.dagster_run
        match = self.projects.run_project(run.job_name, run.tags)
        included = self.included.of_run(self.instance, run, match)
        for project_name in included:
            summary = self._record_run_summary(project_name, run_record)
            self._observe_state(project_name)
            if len(included) == 1:
                self.instance.add_run_tags(run.run_id, summary.run_tags())
        if len(included) > 1:  # the run's own tags count all its models
            self.instance.add_run_tags(run.run_id, summarize_run(self.instance, run_record).run_tags())
        if match.project is None:
            return
        project, kind = match.project.name, match.kind
        thresholds = self.projects.alerts_for(project).thresholds
        if event_type == dg.DagsterEventType.RUN_FAILURE:
            self._add(rules.scheduled_run_failed(project, run))
            return
        self._add(rules.slow_run(project, self.instance, run_record, thresholds))
        environment = self.projects.config.project(project).environment
        plan = plan_outcome(self.instance, run_id) if kind is JobKind.PLAN else None
        self._add(rules.informational(project, kind, run, environment, plan))

    def materializations(self, project: str, key: dg.AssetKey) -> None:
        thresholds = self.projects.alerts_for(project).thresholds
        cost = self.projects.config.cost_for(self.projects.config.project(project))
        for record in self._new_records(
            self.instance.fetch_materializations,
            lambda after: dg.AssetRecordsFilter(asset_key=key, after_storage_id=after),
        ):
            self._add(rules.slow_model(project, self.instance, record, thresholds))
            self._add(costly_model(project, self.instance, record, cost))

    def state_observations(self, project: str, key: dg.AssetKey) -> None:
        thresholds = self.projects.alerts_for(project).thresholds
        for record in self._new_records(
            self.instance.fetch_observations,
            lambda after: dg.AssetRecordsFilter(asset_key=key, after_storage_id=after),
        ):
            self._add(rules.state_unreachable(project, record))
            self._add(rules.state_growth(project, self.instance, record, thresholds))

    def deliver(self, slack: AlertSender) -> None:
        deliver_alerts(self.context, self.projects, self.cursor, self.alerts, slack, self.now)

    def _record_run_summary(self, project: str, record: dg.RunRecord) -> RunSummary:
        models = self.included.models.get(project)  # unknown: the run is the project's (its tag)
        summary = summarize_run(self.instance, record, ProjectModels(project, models) if models else None)
        spent = run_cost(self.instance, summary.run_id)
        metadata = {**summary.metadata(), **(spent.metadata() if spent is not None else {})}
        self.instance.report_runless_asset_event(dg.AssetObservation(asset_key=runs_key(project), metadata=metadata))
        return summary

    def _observe_state(self, project: str) -> None:
        probe = self.included.state_probes.get(project)
        if probe is not None:
            metadata = state_size_metadata(project, probe, self.context.log)
            self.instance.report_runless_asset_event(
                dg.AssetObservation(asset_key=state_key(project), metadata=metadata)
            )

    def _add(self, alert: rules.Alert | None) -> None:
        if alert is not None:
            self.alerts.append(alert)

    def _new_records(self, fetch: Callable[..., dg.EventRecordsResult], make_filter: Callable) -> Iterable:
        """Records after the cursor, oldest first; on the first tick, only the recent past."""
        if self.start_storage_id is None:
            records = list(fetch(make_filter(None), limit=_PAGE, ascending=False).records)
            for record in records:
                self.cursor.advance(record.storage_id)
            since = self.now - FIRST_TICK_LOOKBACK_S
            return [r for r in reversed(records) if r.timestamp >= since]
        found: list = []
        page_cursor = None
        while True:
            result = fetch(make_filter(self.start_storage_id), limit=_PAGE, cursor=page_cursor, ascending=True)
            found.extend(result.records)
            if not result.has_more:
                break
            page_cursor = result.cursor
        for record in found:
            self.cursor.advance(record.storage_id)
        return found


def deliver_alerts(
    context: dg.SensorEvaluationContext,
    projects: ProjectLookup,
    cursor: AlertCursor,
    alerts: Sequence[rules.Alert],
    slack: AlertSender,
    now: float,
) -> None:
    """Posts each alert to its tier's channel, at most once per cause per cooldown, and
    records it on ``dagctl/<project>/alerts``; shared by every alerting sensor."""
    client = None
    for alert in alerts:
        settings = projects.alerts_for(alert.project)
        if cursor.cooling_down(alert.cause, now, settings.cooldown_minutes * 60):
            context.log.info(f"{alert.cause}: in cooldown, not posted again")
            continue
        cursor.mark_sent(alert.cause, now)
        _record_alert(context.instance, alert)
        channel = _channel_for(alert.tier, settings)
        text = tier_alert_text(alert.tier, alert.project, alert.summary, alert.run_id)
        if alert.tier == "info" and channel is None:
            context.log.info(f"{alert.cause}: recorded ({text})")
            continue
        client = client or slack.get_client()
        client.chat_postMessage(channel=channel or "", text=text)
        context.log.info(f"{alert.cause}: posted to {channel or '(log only)'}")


def _record_alert(instance: dg.DagsterInstance, alert: rules.Alert) -> None:
    metadata: dict[str, Any] = {
        "tier": alert.tier,
        "cause": alert.cause,
        "summary": redact(alert.summary),
    }
    if alert.run_id:
        metadata["run_id"] = alert.run_id
    instance.report_runless_asset_event(dg.AssetObservation(asset_key=alerts_key(alert.project), metadata=metadata))


def plan_outcome(instance: dg.DagsterInstance, run_id: str) -> rules.PlanOutcome | None:
    """``applied`` / ``environment`` from the output metadata of a plan run's step, if it has them."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_OUTPUT).records
    for record in records:
        event = record.event_log_entry.dagster_event
        metadata = event.step_output_data.metadata if event is not None else {}
        applied = getattr(metadata.get(PLAN_APPLIED_KEY), "value", None)
        if isinstance(applied, bool):
            environment = getattr(metadata.get(PLAN_ENVIRONMENT_KEY), "value", None)
            return rules.PlanOutcome(applied=applied, environment=environment)
    return None


def _channel_for(tier: str, settings) -> str | None:
    if tier == "page":
        return settings.page_channel or settings.failure_channel
    if tier == "warning":
        return settings.warning_channel or settings.failure_channel
    return settings.info_channel
