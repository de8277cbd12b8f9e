"""Schedules, the config-version deploy sensor, and each project's maintenance jobs.

``load_definitions`` merges :func:`build_automation`'s definitions into the code location:

- every project: ``<project>_run_schedule`` (:mod:`~dagctl_dagster.automation.schedules`),
  and the jobs and schedules its framework plugin contributes (SQLMesh: ``<project>_plan``,
  ``<project>_janitor``, ``<project>_state_backup``; dbt: ``<project>_deploy``);
- one ``dagctl_config_version_sensor`` that launches each project's deploy job on a new
  config version.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg

from dagctl_dagster.project import CodeLocationContext


@dataclass
class Automation:
    definitions: dg.Definitions = field(default_factory=dg.Definitions)


def build_automation(location: CodeLocationContext) -> Automation:
    """Schedules, sensors and jobs for every project of the code location."""
    from dagctl_dagster.automation.config_sensor import build_config_version_sensor
    from dagctl_dagster.automation.schedules import build_run_schedule

    jobs: list[dg.JobDefinition] = []
    deploy_jobs: list[dg.JobDefinition] = []  # what the deploy sensor launches
    schedules: list[dg.ScheduleDefinition] = []
    for project_defs in location.projects:
        run_schedule = build_run_schedule(location.loaded.config, project_defs.project)
        if run_schedule is not None:
            schedules.append(run_schedule)
        jobs += project_defs.jobs
        schedules += project_defs.schedules
        if project_defs.deploy_job is not None:
            deploy_jobs.append(project_defs.deploy_job)
    sensor = build_config_version_sensor(location, deploy_jobs)
    return Automation(definitions=dg.Definitions(jobs=jobs, schedules=schedules, sensors=[sensor]))
