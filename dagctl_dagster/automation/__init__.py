"""Schedules, the config-version deploy sensor, SQLMesh plan / janitor / state-backup jobs.

``load_definitions`` merges :func:`build_automation`'s definitions into the code location:

- every project: ``<project>_run_schedule`` (:mod:`~dagctl_dagster.automation.schedules`);
- SQLMesh projects: ``<project>_plan``, ``<project>_janitor`` (+ weekly schedule) and
  ``<project>_state_backup`` (+ daily schedule);
- dbt projects: ``<project>_deploy`` (``dbt build --select``);
- one ``dagctl_config_version_sensor`` that deploys on a new config version.
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
    from dagctl_dagster.automation.dbt_deploy import build_dbt_deploy_job
    from dagctl_dagster.automation.schedules import build_maintenance_schedules, build_run_schedule
    from dagctl_dagster.sqlmesh.maintenance import build_janitor_job, build_state_backup_job
    from dagctl_dagster.sqlmesh.plan import build_plan_job

    loaded = location.loaded
    deploy_jobs: list[dg.JobDefinition] = []  # what the deploy sensor launches
    maintenance_jobs: list[dg.JobDefinition] = []
    schedules: list[dg.ScheduleDefinition] = []
    for project_defs in location.projects:
        project = project_defs.project
        run_schedule = build_run_schedule(loaded.config, project)
        if run_schedule is not None:
            schedules.append(run_schedule)
        if project.framework == "sqlmesh":
            deploy_jobs.append(build_plan_job(loaded, project))
            maintenance_jobs += [build_janitor_job(loaded, project), build_state_backup_job(loaded, project)]
            schedules += build_maintenance_schedules(loaded.config, project)
        else:
            deploy_jobs.append(build_dbt_deploy_job(project))
    sensor = build_config_version_sensor(location, deploy_jobs)
    return Automation(
        definitions=dg.Definitions(jobs=[*deploy_jobs, *maintenance_jobs], schedules=schedules, sensors=[sensor])
    )
