"""Run, janitor and state-backup schedules: cron, timezone, target job, overlap policy."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import dagster as dg
import pytest

from dagctl_dagster.automation.schedules import build_run_schedule
from dagctl_dagster.config import DagctlConfig
from dagctl_dagster.names import PROJECT_TAG
from dagctl_dagster.sqlmesh.maintenance import build_maintenance_schedules


def _config(**project_fields) -> DagctlConfig:
    project = {"name": "shop", "framework": "sqlmesh", "path": "shop", **project_fields}
    return DagctlConfig.model_validate({"version": 1, "timezone": "Europe/Berlin", "projects": [project]})


def _tick(schedule: dg.ScheduleDefinition, instance: dg.DagsterInstance):
    context = dg.build_schedule_context(
        instance=instance, scheduled_execution_time=datetime(2026, 11, 21, 12, 15, tzinfo=UTC)
    )
    return schedule.evaluate_tick(context)


def _tick_beside_a_shop_run(overlap: str, status: dg.DagsterRunStatus) -> tuple[str, Any]:
    """A tick of shop's run schedule (``overlap: <overlap>``) while a shop run is in ``status``."""
    config = _config(overlap=overlap)
    schedule = build_run_schedule(config, config.projects[0])
    with dg.instance_for_test() as instance:
        run_id = _job_run(instance, "shop_run", status)
        return run_id, _tick(schedule, instance)


def _job_run(instance: dg.DagsterInstance, job_name: str, status: dg.DagsterRunStatus) -> str:
    @dg.op
    def noop():
        pass

    @dg.job(name=job_name)
    def job():
        noop()

    return instance.create_run_for_job(job, status=status).run_id


def test_sqlmesh_run_schedule_defaults_to_every_15_minutes_in_the_config_timezone():
    config = _config()
    schedule = build_run_schedule(config, config.projects[0])
    assert schedule.name == "shop_run_schedule"
    assert schedule.cron_schedule == "*/15 * * * *"
    assert schedule.job_name == "shop_run"
    assert schedule.execution_timezone == "Europe/Berlin"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def test_project_cron_and_timezone_override_the_defaults():
    config = _config(schedule="0 6 * * 1-5", timezone="America/New_York")
    schedule = build_run_schedule(config, config.projects[0])
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("0 6 * * 1-5", "America/New_York")


def test_dbt_project_without_schedule_gets_no_run_schedule():
    config = DagctlConfig.model_validate(
        {"version": 1, "projects": [{"name": "marts", "framework": "dbt", "path": "marts"}]}
    )
    assert build_run_schedule(config, config.projects[0]) is None


@pytest.mark.parametrize("overlap", ["allow", "forbid"])
def test_tick_requests_a_run_when_nothing_is_in_progress(overlap):
    config = _config(overlap=overlap)
    schedule = build_run_schedule(config, config.projects[0])
    with dg.instance_for_test() as instance:
        _job_run(instance, "shop_run", dg.DagsterRunStatus.SUCCESS)  # finished runs do not count
        _job_run(instance, "other_run", dg.DagsterRunStatus.STARTED)  # nor other projects' runs
        result = _tick(schedule, instance)
    assert result.skip_message is None
    assert len(result.run_requests) == 1
    assert result.run_requests[0].tags[PROJECT_TAG] == "shop"


def test_forbid_overlap_skips_the_tick_naming_the_run_in_progress():
    running, result = _tick_beside_a_shop_run("forbid", dg.DagsterRunStatus.STARTED)
    assert result.run_requests == []
    assert result.skip_message is not None
    assert running in result.skip_message
    assert "overlap: forbid" in result.skip_message


def test_forbid_overlap_counts_a_starting_run_as_in_progress():
    starting, result = _tick_beside_a_shop_run("forbid", dg.DagsterRunStatus.STARTING)
    assert result.run_requests == []
    assert starting in result.skip_message


def test_allow_overlap_starts_a_run_beside_the_one_in_progress():
    _, result = _tick_beside_a_shop_run("allow", dg.DagsterRunStatus.STARTED)
    assert len(result.run_requests) == 1


def test_janitor_weekly_and_state_backup_daily_by_default():
    config = _config()
    schedules = {s.name: s for s in build_maintenance_schedules(config, config.projects[0])}
    janitor = schedules["shop_janitor_schedule"]
    backup = schedules["shop_state_backup_schedule"]
    assert (janitor.cron_schedule, janitor.job_name) == ("0 2 * * 0", "shop_janitor")
    assert (backup.cron_schedule, backup.job_name) == ("0 3 * * *", "shop_state_backup")
    assert janitor.execution_timezone == backup.execution_timezone == "Europe/Berlin"
    with dg.instance_for_test() as instance:
        assert len(_tick(janitor, instance).run_requests) == 1


def test_janitor_and_backup_schedules_can_be_turned_off():
    config = _config(janitor_schedule=None, state_backup={"enabled": False})
    assert build_maintenance_schedules(config, config.projects[0]) == []
