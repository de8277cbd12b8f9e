"""Run identity: the names dagctl gives a project's jobs and schedules, and the project of a run.

Every job ``load_definitions`` builds for a project is ``<project>_<kind>`` (:class:`JobKind`),
its schedule ``<project>_<kind>_schedule``, and its runs carry the ``dagctl/project`` tag.

Example::

    job_name(project, JobKind.RUN)              # "analytics_run"
    match = project_of_run(config, run.job_name, run.tags)
    match.project                               # the ProjectConfig, or None
    match.kind                                  # JobKind.RUN

One rule decides a run's project, for everyone who asks (the Kubernetes launcher, the
alert sensors): the ``dagctl/project`` tag when the run has one, else the longest project
name that prefixes the job name (``<project>_...``, for jobs a user defines beside ours).
A tag naming no configured project is reported (:attr:`RunProject.unknown_tag`), never
silently replaced by a guess from the job name: the launcher refuses such a run (its
project's secrets and limits are unknown), the alerts route it with the default settings.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

from dagctl_dagster.config import DagctlConfig, ProjectConfig
from dagctl_dagster.names import PROJECT_TAG

__all__ = [
    "CONFIG_VERSION_SENSOR",
    "FRESHNESS_SENSOR",
    "RUN_FAILURE_SENSOR",
    "STATE_OBSERVATION_JOB",
    "STATE_OBSERVATION_SCHEDULE",
    "TIERED_ALERTS_SENSOR",
    "JobKind",
    "RunProject",
    "job_name",
    "project_of_run",
    "schedule_name",
]


# The code location's own sensors and jobs (one each, not per project).
CONFIG_VERSION_SENSOR = "dagctl_config_version_sensor"
TIERED_ALERTS_SENSOR = "dagctl_tiered_alerts"
FRESHNESS_SENSOR = "dagctl_freshness"
RUN_FAILURE_SENSOR = "dagctl_slack_on_run_failure"
STATE_OBSERVATION_JOB = "dagctl_observe_sqlmesh_state"
STATE_OBSERVATION_SCHEDULE = f"{STATE_OBSERVATION_JOB}_hourly"


class JobKind(enum.StrEnum):
    RUN = "run"
    PLAN = "plan"
    JANITOR = "janitor"
    STATE_BACKUP = "state_backup"
    DEPLOY = "deploy"


def job_name(project: ProjectConfig, kind: JobKind) -> str:
    return f"{project.name}_{kind.value}"


def schedule_name(project: ProjectConfig, kind: JobKind) -> str:
    return f"{job_name(project, kind)}_schedule"


@dataclass(frozen=True)
class RunProject:
    """The project a run belongs to (None: no project), the kind of its job, an unknown tag."""

    project: ProjectConfig | None
    kind: JobKind | None = None
    unknown_tag: str | None = None


def project_of_run(config: DagctlConfig, run_job_name: str, tags: Mapping[str, str]) -> RunProject:
    tagged = tags.get(PROJECT_TAG)
    if tagged is not None:
        project = next((p for p in config.projects if p.name == tagged), None)
        if project is None:
            return RunProject(None, unknown_tag=tagged)
    else:
        prefixed = [p for p in config.projects if run_job_name.startswith(f"{p.name}_")]
        project = max(prefixed, key=lambda p: len(p.name)) if prefixed else None
    return RunProject(project, _kind_of(project, run_job_name))


def _kind_of(project: ProjectConfig | None, run_job_name: str) -> JobKind | None:
    if project is None or not run_job_name.startswith(f"{project.name}_"):
        return None
    try:
        return JobKind(run_job_name[len(project.name) + 1 :])
    except ValueError:
        return None
