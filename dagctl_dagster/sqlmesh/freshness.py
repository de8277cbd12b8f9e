"""A SQLMesh project's freshness source: each model's own ``cron`` against the interval
records in SQLMesh state; a model with no completed interval is late."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import dagster as dg

from dagctl_dagster.config import LoadedConfig, ProjectConfig
from dagctl_dagster.project import ModelSchedule


@dataclass(frozen=True)
class SQLMeshFreshness:
    """Implements :class:`~dagctl_dagster.project.FreshnessSource` for one SQLMesh project."""

    loaded: LoadedConfig
    project: ProjectConfig
    model_keys: tuple[dg.AssetKey, ...]

    @property
    def check_keys(self) -> list[dg.AssetKey]:
        return list(self.model_keys)

    @property
    def locked_by_runs(self) -> bool:
        return True  # DuckDB state allows one process; a run holds it

    def schedules(self, instance: dg.DagsterInstance) -> list[ModelSchedule]:
        from dagctl_dagster.sqlmesh import internals
        from dagctl_dagster.sqlmesh.context import open_context
        from dagctl_dagster.sqlmesh.translator import schema_and_table

        with open_context(self.loaded, self.project) as context:  # closed at once: DuckDB state allows one process
            models = internals.completed_intervals(context, self.project.environment)
        keys = set(self.model_keys)
        found = []
        for model in models:
            key = dg.AssetKey(schema_and_table(model.fqn))
            if key not in keys:
                continue
            last = datetime.fromtimestamp(model.last_end_ms / 1000, UTC) if model.last_end_ms is not None else None
            found.append(ModelSchedule(key, model.cron, model.cron_tz or "UTC", last))
        return found
