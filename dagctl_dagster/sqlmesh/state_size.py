"""The size of a SQLMesh project's state database (its state connection, else its gateway's).

Example::

    size = measure_state_size(project_dir, project)
    size.backend, size.size_bytes      # ("duckdb", 1585152)

DuckDB: the state file and its WAL; PostgreSQL: the state schema's total relation size, and
the database's. Relative DuckDB paths resolve as ``sqlmesh`` resolves them in the project's
directory (:func:`~dagctl_dagster.sqlmesh.internals.load_project_configs`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dagctl_dagster.config import ProjectConfig
from dagctl_dagster.project import StateSize
from dagctl_dagster.sqlmesh import internals

DEFAULT_STATE_SCHEMA = "sqlmesh"
_CONNECT_TIMEOUT_S = 5


def measure_state_size(project_dir: Path, project: ProjectConfig) -> StateSize:
    """The size of the project's SQLMesh state database (its state connection, else its gateway's).

    Raises whatever the database driver raises when the database cannot be reached.
    """
    config = next(iter(internals.load_project_configs([project_dir], working_dir=project_dir).values()))
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
