"""The SQLMesh state database's size (:mod:`dagctl_dagster.sqlmesh.state_size`), observed hourly
on ``["dagctl", <project>, "sqlmesh_state"]``.

Example::

    assets, job, schedule = state_size_observation({"analytics": (project_dir, project_config)})

Each observation carries ``size_bytes`` (DuckDB: the state file; PostgreSQL: the state
tables' total relation size) and ``reachable``; an unreachable database is observed as
``reachable: false`` with the error's first line, which the tiered-alert sensor pages on.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from dagctl_dagster.alerts.messages import first_line
from dagctl_dagster.config import ProjectConfig
from dagctl_dagster.names import OBSERVABILITY_GROUP, OBSERVABILITY_PREFIX
from dagctl_dagster.run_identity import STATE_OBSERVATION_JOB, STATE_OBSERVATION_SCHEDULE
from dagctl_dagster.settings import schedule_default_status
from dagctl_dagster.sqlmesh.state_size import measure_state_size

STATE_OBSERVATION_CRON = "0 * * * *"


def state_key(project: str) -> dg.AssetKey:
    return dg.AssetKey([OBSERVABILITY_PREFIX, project, "sqlmesh_state"])


def state_size_asset(project: ProjectConfig, project_dir: Path) -> dg.SourceAsset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return _state_size_asset(project, project_dir)


def _state_size_asset(project: ProjectConfig, project_dir: Path) -> dg.SourceAsset:
    @dg.observable_source_asset(
        key=state_key(project.name),
        group_name=OBSERVABILITY_GROUP,
        description=f"SQLMesh state database of project '{project.name}' (size observed hourly).",
    )
    def _observe(context) -> dg.ObserveResult:
        try:
            size = measure_state_size(project_dir, project)
        except Exception as exc:  # an unreachable database is an observation, paged by the alert sensor
            # the whole message on one line: SQLMesh config errors put the cause on line two
            error = first_line(" ".join(f"{type(exc).__name__}: {exc}".split()))
            context.log.error(f"state database of '{project.name}' unreachable: {error}")
            return dg.ObserveResult(metadata={"reachable": False, "error": error})
        metadata: dict[str, Any] = {
            "reachable": True,
            "backend": size.backend,
            "size_bytes": dg.MetadataValue.int(size.size_bytes),
            "location": size.location,
        }
        if size.database_bytes is not None:
            metadata["database_bytes"] = dg.MetadataValue.int(size.database_bytes)
        return dg.ObserveResult(metadata=metadata)

    return _observe


def state_size_observation(
    projects: Mapping[str, tuple[Path, ProjectConfig]],
) -> tuple[list[dg.SourceAsset], list[dg.UnresolvedAssetJobDefinition], list[dg.ScheduleDefinition]]:
    """Observable assets for each SQLMesh project, one observation job and its hourly schedule."""
    assets = [state_size_asset(project, project_dir) for project_dir, project in projects.values()]
    if not assets:
        return [], [], []
    job = dg.define_asset_job(
        STATE_OBSERVATION_JOB,
        selection=dg.AssetSelection.assets(*[a.key for a in assets]),
        description="Observes the size of every SQLMesh state database.",
    )
    schedule = dg.ScheduleDefinition(
        name=STATE_OBSERVATION_SCHEDULE,
        job=job,
        cron_schedule=STATE_OBSERVATION_CRON,
        default_status=schedule_default_status(),
    )
    return assets, [job], [schedule]
