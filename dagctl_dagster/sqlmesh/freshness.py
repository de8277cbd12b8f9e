"""A SQLMesh project's freshness source: each model's own ``cron`` against the interval
records in SQLMesh state; a model with no completed interval is late.

The sensor reads state through a Context of its own, closed at once. A run that executes the
``dagctl_freshness`` checks (a "Materialize all" plans every check of its assets) reads them
through the run's SQLMesh session, after the run's model steps: a second Context in the run
worker would open a second connection beside the session's (DuckDB state allows one process,
and one shared cursor must not be used from two threads at once).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

import dagster as dg

from dagctl_dagster.config import LoadedConfig, ProjectConfig
from dagctl_dagster.project import ModelSchedule

if TYPE_CHECKING:
    from dagctl_dagster.sqlmesh.internals.intervals import ModelIntervals


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

    @cached_property
    def _session_key(self) -> str:
        from dagctl_dagster.sqlmesh.asset_factory import session_resource_key
        from dagctl_dagster.sqlmesh.context import sqlmesh_location

        return session_resource_key(sqlmesh_location(self.loaded, self.project))

    @property
    def run_resource_keys(self) -> frozenset[str]:
        return frozenset({self._session_key})

    def schedules(self, instance: dg.DagsterInstance) -> list[ModelSchedule]:
        from dagctl_dagster.sqlmesh import internals
        from dagctl_dagster.sqlmesh.context import open_context

        with open_context(self.loaded, self.project) as context:  # closed at once: DuckDB state allows one process
            return self._schedules(internals.completed_intervals(context, self.project.environment))

    def schedules_in_run(self, resources: Any, instance: dg.DagsterInstance) -> list[ModelSchedule]:
        """Through the run's session; a run that opened none (it executes only checks) reads
        state as the sensor does."""
        from dagctl_dagster.sqlmesh.session import SQLMeshRunSession

        session = getattr(resources, self._session_key)
        found = session.completed_intervals() if isinstance(session, SQLMeshRunSession) else None
        return self.schedules(instance) if found is None else self._schedules(found)

    def _schedules(self, models: list[ModelIntervals]) -> list[ModelSchedule]:
        from dagctl_dagster.sqlmesh.translator import model_asset_key

        keys = set(self.model_keys)
        found = []
        for model in models:
            key = model_asset_key(model.fqn)
            if key not in keys:
                continue
            last = datetime.fromtimestamp(model.last_end_ms / 1000, UTC) if model.last_end_ms is not None else None
            found.append(ModelSchedule(key, model.cron, model.cron_tz or "UTC", last))
        return found
