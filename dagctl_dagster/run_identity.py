"""Run identity: the names dagctl gives a project's jobs and schedules, and the project of a run.

Every job ``load_definitions`` builds for a project is ``<project>_<kind>`` (:class:`JobKind`),
its schedule ``<project>_<kind>_schedule``, the op of a one-op job ``<project>_<kind>_op``,
and its runs carry the ``dagctl/project`` tag. Every name a project contributes carries the
project, so any number of projects share one repository (Dagster refuses two op definitions
of one name in a repository).

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
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from dagctl_dagster.config import DagctlConfig, ProjectConfig
from dagctl_dagster.names import PROJECT_TAG

__all__ = [
    "CONFIG_VERSION_SENSOR",
    "LOCATION_JOBS",
    "LOCATION_SENSORS",
    "PAUSE_JOB",
    "PAUSE_OP",
    "FRESHNESS_SENSOR",
    "RUN_FAILURE_SENSOR",
    "STATE_OBSERVATION_JOB",
    "STATE_OBSERVATION_SCHEDULE",
    "TIERED_ALERTS_SENSOR",
    "JobKind",
    "RunProject",
    "deploy_run_key",
    "framework_resource_key",
    "job_name",
    "model_op_name",
    "op_name",
    "project_of_run",
    "project_op_name",
    "schedule_name",
]


# The code location's own sensors and jobs (one each, not per project).
CONFIG_VERSION_SENSOR = "dagctl_config_version_sensor"
TIERED_ALERTS_SENSOR = "dagctl_tiered_alerts"
FRESHNESS_SENSOR = "dagctl_freshness"
RUN_FAILURE_SENSOR = "dagctl_slack_on_run_failure"
STATE_OBSERVATION_JOB = "dagctl_observe_sqlmesh_state"
STATE_OBSERVATION_SCHEDULE = f"{STATE_OBSERVATION_JOB}_hourly"
PAUSE_JOB = "dagctl_models_pause"
PAUSE_OP = "pause_or_resume_model"
LOCATION_JOBS = frozenset({STATE_OBSERVATION_JOB, PAUSE_JOB})
LOCATION_SENSORS = frozenset({CONFIG_VERSION_SENSOR, TIERED_ALERTS_SENSOR, FRESHNESS_SENSOR, RUN_FAILURE_SENSOR})

_OP_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


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


def op_name(project: ProjectConfig, kind: JobKind) -> str:
    """The op of a one-op job. Model ops are ``<project>__<model>``; a name without ``__``
    after the project cannot meet one."""
    return f"{job_name(project, kind)}_op"


def model_op_name(project_name: str, key_path: Sequence[str]) -> str:
    """``<project>__<key parts>``: the op of one model (or of a check step on it), without
    repeating the project when the key starts with it."""
    path = list(key_path)
    if len(path) > 1 and path[0] == project_name:
        path = path[1:]
    return _OP_UNSAFE.sub("_", "__".join([project_name, *path]))


def project_op_name(project_name: str, what: str) -> str:
    """``<project>_<what>``: a project's op that is no model's (its dbt build, its freshness checks)."""
    return f"{project_name}_{what}"


def framework_resource_key(project_name: str, framework: str) -> str:
    """The key of a project's framework resource (its SQLMesh session, its dbt CLI); a SQLMesh
    multi-repository group shares its first project's."""
    return f"{project_name}_{framework}"


def deploy_run_key(project: ProjectConfig, version: str) -> str:
    """The run key of a project's deploy at a config version: Dagster launches it once."""
    return f"deploy:{project.name}:{version}"


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
