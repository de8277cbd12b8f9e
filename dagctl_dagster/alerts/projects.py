"""Which project a run belongs to, and that project's alert settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from dagctl_dagster.config import AlertsConfig, DagctlConfig
from dagctl_dagster.project import PROJECT_TAG


@dataclass(frozen=True)
class ProjectLookup:
    """Example::

    lookup = ProjectLookup(loaded.config)
    lookup.project_of("analytics_run", run.tags)  # "analytics"
    lookup.alerts_for("analytics").page_channel
    """

    config: DagctlConfig

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.config.projects]

    @property
    def default_alerts(self) -> AlertsConfig:
        return self.config.alerts

    def alerts_for(self, project: str | None) -> AlertsConfig:
        if project is None:
            return self.config.alerts
        return self.config.alerts_for(self.config.project(project))

    def project_of(self, job_name: str, tags: Mapping[str, str]) -> str | None:
        """The ``dagctl/project`` run tag, else the project whose name prefixes the job name."""
        tagged = tags.get(PROJECT_TAG)
        if tagged in self.names:
            return tagged
        matches = [name for name in self.names if job_name.startswith(f"{name}_")]
        return max(matches, key=len) if matches else None

    def job_kind(self, job_name: str, tags: Mapping[str, str]) -> str | None:
        """``run`` / ``plan`` / ``janitor`` / ... for `<project>_<kind>` jobs."""
        project = self.project_of(job_name, tags)
        if project is None or not job_name.startswith(f"{project}_"):
            return None
        return job_name[len(project) + 1 :]
