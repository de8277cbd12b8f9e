"""A dbt project's freshness source: each model's last build (its latest materialization in
Dagster) against ``meta: {dagctl: {freshness: {cron, grace_minutes}}}`` in the model's config,
else the project's ``schedule``; a dbt model with neither has no SLA."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dagster as dg

from dagctl_dagster.config import DagctlConfig, ProjectConfig
from dagctl_dagster.project import ModelSchedule

# key -> (cron, grace minutes or None for the project's)
ModelCrons = Mapping[dg.AssetKey, tuple[str, int | None]]


@dataclass(frozen=True)
class DbtFreshness:
    """Implements :class:`~dagctl_dagster.project.FreshnessSource` for one dbt project."""

    crons: ModelCrons
    timezone: str

    @property
    def check_keys(self) -> list[dg.AssetKey]:
        return list(self.crons)

    @property
    def locked_by_runs(self) -> bool:
        return False  # read from Dagster's event log

    @property
    def run_resource_keys(self) -> frozenset[str]:
        return frozenset()

    def schedules_in_run(self, resources: Any, instance: dg.DagsterInstance) -> list[ModelSchedule]:
        return self.schedules(instance)  # the run's own builds are in the event log already

    def schedules(self, instance: dg.DagsterInstance) -> list[ModelSchedule]:
        found = []
        for key, (cron, grace) in sorted(self.crons.items(), key=lambda item: item[0].to_user_string()):
            event = instance.get_latest_materialization_event(key)
            last = datetime.fromtimestamp(event.timestamp, UTC) if event is not None else None
            found.append(ModelSchedule(key, cron, self.timezone, last, grace))
        return found


def model_crons(
    project: ProjectConfig, model_keys: list[dg.AssetKey], own: ModelCrons
) -> dict[dg.AssetKey, tuple[str, int | None]]:
    """Each model's own ``meta.dagctl.freshness`` (cron, grace), else the project's schedule."""
    default = project.effective_schedule
    crons: dict[dg.AssetKey, tuple[str, int | None]] = {}
    for key in model_keys:
        if key in own:
            crons[key] = own[key]
        elif default:
            crons[key] = (default, None)
    return crons


def dbt_freshness(
    config: DagctlConfig, project: ProjectConfig, model_keys: list[dg.AssetKey], own: ModelCrons
) -> DbtFreshness:
    return DbtFreshness(model_crons(project, model_keys, own), project.timezone or config.timezone)
