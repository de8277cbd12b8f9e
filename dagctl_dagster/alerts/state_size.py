"""The SQLMesh state database's size, observed hourly on ``["dagctl", <project>, "sqlmesh_state"]``.

Example::

    assets, job, schedule = state_size_observation({"analytics": (project_dir, project_config)})

Each observation carries ``size_bytes`` (DuckDB: the state file; PostgreSQL: the state
tables' total relation size) and ``reachable``; an unreachable database is observed as
``reachable: false`` with the error's first line, which the tiered-alert sensor pages on.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from dagctl_dagster.alerts.messages import first_line
from dagctl_dagster.config import ProjectConfig
from dagctl_dagster.names import OBSERVABILITY_GROUP, OBSERVABILITY_PREFIX
from dagctl_dagster.settings import schedule_default_status

STATE_OBSERVATION_JOB = "dagctl_observe_sqlmesh_state"
STATE_OBSERVATION_CRON = "0 * * * *"
DEFAULT_STATE_SCHEMA = "sqlmesh"
_CONNECT_TIMEOUT_S = 5


def state_key(project: str) -> dg.AssetKey:
    return dg.AssetKey([OBSERVABILITY_PREFIX, project, "sqlmesh_state"])


@dataclass(frozen=True)
class StateSize:
    backend: str
    size_bytes: int
    database_bytes: int | None = None
    location: str = ""


def measure_state_size(project_dir: Path, project: ProjectConfig) -> StateSize:
    """The size of the project's SQLMesh state database (its state connection, else its gateway's).

    Raises whatever the database driver raises when the database cannot be reached.
    """
    from sqlmesh.core.config import Config
    from sqlmesh.core.config.loader import load_configs

    config = next(iter(load_configs(None, Config, paths=[project_dir]).values()))
    gateway = project.gateway or config.default_gateway_name
    connection = config.get_state_connection(gateway) or config.get_connection(gateway)
    schema = config.get_state_schema(gateway) or DEFAULT_STATE_SCHEMA
    if connection.type_ == "duckdb":
        return _duckdb_size(connection, project_dir)
    if connection.type_ == "postgres":
        return _postgres_size(connection, schema)
    raise ValueError(
        f"project '{project.name}': measuring a '{connection.type_}' state database is not supported "
        "(DuckDB and PostgreSQL are)"
    )


def _duckdb_size(connection: Any, project_dir: Path) -> StateSize:
    database = connection.database
    if not database or database == ":memory:":
        return StateSize("duckdb", 0, location=":memory:")
    path = Path(database) if Path(database).is_absolute() else project_dir / database
    files = [path, path.with_name(path.name + ".wal")]
    return StateSize("duckdb", sum(f.stat().st_size for f in files if f.exists()), location=str(path))


def _postgres_size(connection: Any, schema: str) -> StateSize:
    import psycopg2

    conn = psycopg2.connect(
        host=connection.host,
        port=connection.port,
        user=connection.user,
        password=connection.password,
        dbname=connection.database,
        connect_timeout=_CONNECT_TIMEOUT_S,
    )
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0), pg_database_size(current_database()) "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'm')",
                (schema,),
            )
            tables, database = cur.fetchone()
    finally:
        conn.close()
    where = f"{connection.host}:{connection.port}/{connection.database} schema {schema}"
    return StateSize("postgres", int(tables), int(database), location=where)


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
        name=f"{STATE_OBSERVATION_JOB}_hourly",
        job=job,
        cron_schedule=STATE_OBSERVATION_CRON,
        default_status=schedule_default_status(),
    )
    return assets, [job], [schedule]
