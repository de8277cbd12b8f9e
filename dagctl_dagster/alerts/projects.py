"""Which project a run belongs to, and that project's alert settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from dagctl_dagster.config import AlertsConfig, DagctlConfig
from dagctl_dagster.run_identity import RunProject, project_of_run


@dataclass(frozen=True)
class ProjectLookup:
    """Example::

    lookup = ProjectLookup(loaded.config)
    lookup.project_of("analytics_run", run.tags)  # "analytics"
    lookup.alerts_for("analytics").page_channel
    """

    config: DagctlConfig

    @property
    def default_alerts(self) -> AlertsConfig:
        return self.config.alerts

    def alerts_for(self, project: str | None) -> AlertsConfig:
        if project is None:
            return self.config.alerts
        return self.config.alerts_for(self.config.project(project))

    def project_of(self, job_name: str, tags: Mapping[str, str]) -> str | None:
        """The run's project (:func:`~dagctl_dagster.run_identity.project_of_run`); a run tagged
        with a project this config does not have belongs to none: it gets the default alerts."""
        project = project_of_run(self.config, job_name, tags).project
        return project.name if project else None

    def run_project(self, job_name: str, tags: Mapping[str, str]) -> RunProject:
        """The run's project and the kind of its job, for callers that need both."""
        return project_of_run(self.config, job_name, tags)
