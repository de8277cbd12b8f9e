"""A project's state database size (its plugin's ``state_probe``: SQLMesh state, see
:mod:`dagctl_dagster.sqlmesh.state_size`), observed hourly on ``["dagctl", <project>, "sqlmesh_state"]``.

Example::

    assets, jobs, schedules = state_size_observation(location.projects)

Each observation carries ``size_bytes`` (DuckDB: the state file; PostgreSQL: the state
tables' total relation size) and ``reachable``; an unreachable database is observed as
``reachable: false`` with the error's first line, which the tiered-alert sensor pages on.
Besides the hourly job, the tiered-alert sensor observes it after every finished run that
included the project's models (:func:`state_size_metadata`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg

from dagctl_dagster.alerts.messages import first_line
from dagctl_dagster.names import OBSERVABILITY_GROUP, OBSERVABILITY_PREFIX
from dagctl_dagster.project import ProjectDefinitions, StateSize
from dagctl_dagster.run_identity import STATE_OBSERVATION_JOB, STATE_OBSERVATION_SCHEDULE
from dagctl_dagster.settings import schedule_default_status

STATE_OBSERVATION_CRON = "0 * * * *"


def state_key(project: str) -> dg.AssetKey:
    return dg.AssetKey([OBSERVABILITY_PREFIX, project, "sqlmesh_state"])


def state_size_asset(project: str, probe: Callable[[], StateSize]) -> dg.SourceAsset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return _state_size_asset(project, probe)


def _state_size_asset(project: str, probe: Callable[[], StateSize]) -> dg.SourceAsset:
    @dg.observable_source_asset(
        key=state_key(project),
        group_name=OBSERVABILITY_GROUP,
        description=f"State database of project '{project}' (size observed hourly and after each run of its models).",
    )
    def _observe(context) -> dg.ObserveResult:
        return dg.ObserveResult(metadata=state_size_metadata(project, probe, context.log))

    return _observe


def state_size_metadata(project: str, probe: Callable[[], StateSize], log: Any) -> dict[str, Any]:
    """What one observation of the state database records; an unreachable database is an
    observation too (``reachable: false`` and the error), paged by the tiered-alert sensor."""
    try:
        size = probe()
    except Exception as exc:
        # the whole message on one line: SQLMesh config errors put the cause on line two
        error = first_line(" ".join(f"{type(exc).__name__}: {exc}".split()))
        log.error(f"state database of '{project}' unreachable: {error}")
        return {"reachable": False, "error": error}
    metadata: dict[str, Any] = {
        "reachable": True,
        "backend": size.backend,
        "size_bytes": dg.MetadataValue.int(size.size_bytes),
        "location": size.location,
    }
    if size.database_bytes is not None:
        metadata["database_bytes"] = dg.MetadataValue.int(size.database_bytes)
    return metadata


def state_size_observation(
    projects: Sequence[ProjectDefinitions],
) -> tuple[list[dg.SourceAsset], list[dg.UnresolvedAssetJobDefinition], list[dg.ScheduleDefinition]]:
    """Observable assets for each project with a state database, one observation job and its
    hourly schedule."""
    assets = [state_size_asset(p.name, p.state_probe) for p in projects if p.state_probe is not None]
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
