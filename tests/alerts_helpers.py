"""Shared set-up of the alert tests: Slack stub wiring, secrets, small jobs, backdated events."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import yaml

from dagctl_dagster.config import load_config

SECRET_TOKEN = "xoxb-test-secret-4242-do-not-leak"
SECRET_PASSWORD = "pg-secret-hunter2-77"


def use_slack_stub(monkeypatch, stub, *, token: str | None = SECRET_TOKEN) -> None:
    monkeypatch.setenv("SLACK_API_URL", stub.url)
    if token:
        monkeypatch.setenv("SLACK_BOT_TOKEN", token)
    else:
        monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    monkeypatch.setenv("SQLMESH_STATE_PASSWORD", SECRET_PASSWORD)
    monkeypatch.setenv("DAGSTER_WEBSERVER_URL", "http://dagster.test:3000")


def write_config(root: Path, alerts: dict, projects: list[dict] | None = None):
    """A `.dagctl/config.yaml` under ``root`` with an ``alerts:`` block; returns the loaded config."""
    projects = projects or [{"name": "analytics", "framework": "sqlmesh", "path": "."}]
    path = root / ".dagctl" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"version": 1, "alerts": alerts, "projects": projects}))
    return load_config(path, check_paths=False)


@dg.op
def noop() -> None:
    pass


def small_job(name: str, tags: dict[str, str] | None = None) -> dg.JobDefinition:
    @dg.job(name=name, tags=tags or {})
    def _job():
        noop()

    return _job


def backdated_run(
    instance: dg.DagsterInstance,
    job: dg.JobDefinition,
    *,
    start: float,
    end: float,
    status: dg.DagsterRunStatus = dg.DagsterRunStatus.SUCCESS,
    tags: dict[str, str] | None = None,
) -> dg.DagsterRun:
    """A run of ``job`` that started and ended at the given times, written through the event log."""
    run = instance.create_run_for_job(job, tags=tags)
    instance.report_dagster_event(
        dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, job_name=job.name), run.run_id, timestamp=start
    )
    end_type = {
        dg.DagsterRunStatus.SUCCESS: dg.DagsterEventType.RUN_SUCCESS,
        dg.DagsterRunStatus.FAILURE: dg.DagsterEventType.RUN_FAILURE,
    }[status]
    instance.report_dagster_event(dg.DagsterEvent(end_type.value, job_name=job.name), run.run_id, timestamp=end)
    return instance.get_run_by_id(run.run_id)


def backdated_observation(instance: dg.DagsterInstance, key: dg.AssetKey, metadata: dict, timestamp: float) -> None:
    """An observation recorded as if it had happened at ``timestamp`` (e.g. a week ago)."""
    # Dagster's public `report_runless_asset_event` always stamps "now"; history needs the
    # event type's data class, which Dagster does not export.
    from dagster._core.events import AssetObservationData

    event = dg.DagsterEvent(
        dg.DagsterEventType.ASSET_OBSERVATION.value,
        job_name="__backdated__",
        event_specific_data=AssetObservationData(dg.AssetObservation(asset_key=key, metadata=metadata)),
    )
    run = instance.create_run_for_job(small_job("__backdated__"))
    instance.report_dagster_event(event, run.run_id, timestamp=timestamp)


def evaluate(sensor: dg.SensorDefinition, instance, defs: dg.Definitions, cursor: str | None):
    """One tick of ``sensor``, as the daemon would run it; returns the new cursor."""
    from dagctl_dagster.alerts.slack import DagctlSlackResource

    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs, resources={"slack": DagctlSlackResource()}
    )
    result = sensor.evaluate_tick(context)
    return result.cursor
