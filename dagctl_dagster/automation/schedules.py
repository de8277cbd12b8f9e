"""Schedules from `.dagctl/config.yaml`: each project's run schedule and the SQLMesh housekeeping.

Every schedule is RUNNING by default: the config file is where a platform engineer turns
a schedule on or off (``schedule:`` / ``janitor_schedule: null`` /
``state_backup.enabled: false``); a toggle in the UI still overrides it until the next
deploy of the code location. ``DAGCTL_AUTOMATION=off`` (what ``scripts/dev.sh`` sets) makes
every schedule and the deploy sensor start STOPPED instead, so a local deployment launches
nothing until the user turns something on. Times are in the project's ``timezone``, else the config's
top-level ``timezone`` (UTC by default).

``overlap: forbid`` skips a tick while a run of the same job is queued or in progress,
naming that run, like a Kubernetes CronJob's ``concurrencyPolicy: Forbid``. With
``overlap: allow`` (the default) a tick always starts a run; the claim store makes sure
overlapping runs never execute the same model twice.
"""

from __future__ import annotations

import dagster as dg

from dagctl_dagster.config import DagctlConfig, ProjectConfig
from dagctl_dagster.names import FRAMEWORK_TAG, PROJECT_TAG
from dagctl_dagster.run_identity import JobKind, job_name, schedule_name
from dagctl_dagster.settings import schedule_default_status

IN_PROGRESS_STATUSES = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def project_timezone(config: DagctlConfig, project: ProjectConfig) -> str:
    return project.timezone or config.timezone


def build_run_schedule(config: DagctlConfig, project: ProjectConfig) -> dg.ScheduleDefinition | None:
    """The schedule of `<project>_run`, or None for a project without one (dbt without ``schedule``)."""
    cron = project.effective_schedule
    if cron is None:
        return None
    run_job = job_name(project, JobKind.RUN)
    tags = {PROJECT_TAG: project.name, FRAMEWORK_TAG: project.framework}

    @dg.schedule(
        name=schedule_name(project, JobKind.RUN),
        cron_schedule=cron,
        job_name=run_job,
        execution_timezone=project_timezone(config, project),
        default_status=schedule_default_status(),
        description=f"Runs the due models of '{project.name}' ({cron}, overlap: {project.overlap}).",
        tags=tags,
    )
    def _run_schedule(context: dg.ScheduleEvaluationContext):
        if project.overlap == "forbid":
            running = in_progress_run_id(context.instance, run_job)
            if running is not None:
                return dg.SkipReason(
                    f"run {running} of {run_job} is still in progress; project '{project.name}' has "
                    "overlap: forbid, so this tick is skipped"
                )
        return dg.RunRequest(tags=tags)

    return _run_schedule


def in_progress_run_id(instance: dg.DagsterInstance, job: str) -> str | None:
    """The id of the newest queued or running run of ``job``, if any."""
    records = instance.get_run_records(dg.RunsFilter(job_name=job, statuses=IN_PROGRESS_STATUSES), limit=1)
    return records[0].dagster_run.run_id if records else None


def maintenance_schedule(
    config: DagctlConfig, project: ProjectConfig, kind: JobKind, cron: str
) -> dg.ScheduleDefinition:
    """The schedule of a project's one-op maintenance job (``<project>_<kind>_schedule``)."""
    return dg.ScheduleDefinition(
        name=schedule_name(project, kind),
        cron_schedule=cron,
        job_name=job_name(project, kind),
        execution_timezone=project_timezone(config, project),
        default_status=schedule_default_status(),
        tags={PROJECT_TAG: project.name, FRAMEWORK_TAG: project.framework},
    )
