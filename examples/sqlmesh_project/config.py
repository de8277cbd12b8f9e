"""SQLMesh config of the bundled example.

Gateways:

- ``local`` (the default): DuckDB warehouse and state in one file beside this file;
  ``SQLMESH_EXAMPLE_DB`` overrides the file (tests point it into a temporary directory).
- ``postgres`` (the Kubernetes example, docs/kubernetes.md): warehouse and SQLMesh state in
  PostgreSQL, so nothing lives in a pod's filesystem. Server and database from the libpq
  variables ``PGHOST``, ``PGPORT``, ``PGUSER``, ``PGDATABASE`` (a ConfigMap); the passwords from
  ``SQLMESH_WAREHOUSE_PASSWORD`` and ``SQLMESH_STATE_PASSWORD`` (Secrets). State is kept in
  the schema ``sqlmesh_state``.
"""

import os
from pathlib import Path

from sqlmesh.core.config import (
    Config,
    DuckDBConnectionConfig,
    GatewayConfig,
    ModelDefaultsConfig,
    PostgresConnectionConfig,
)

HERE = Path(__file__).resolve().parent
DATABASE = os.environ.get("SQLMESH_EXAMPLE_DB", str(HERE / "warehouse.duckdb"))


def _postgres(password_env: str) -> PostgresConnectionConfig:
    return PostgresConnectionConfig(
        host=os.environ.get("PGHOST", "localhost"),
        port=int(os.environ.get("PGPORT", "5432")),
        user=os.environ.get("PGUSER", "sqlmesh"),
        password=os.environ.get(password_env, ""),
        database=os.environ.get("PGDATABASE", "warehouse"),
        concurrent_tasks=5,
    )


config = Config(
    gateways={
        "local": GatewayConfig(
            connection=DuckDBConnectionConfig(database=DATABASE, concurrent_tasks=5),
        ),
        "postgres": GatewayConfig(
            connection=_postgres("SQLMESH_WAREHOUSE_PASSWORD"),
            state_connection=_postgres("SQLMESH_STATE_PASSWORD"),
            state_schema="sqlmesh_state",
        ),
    },
    default_gateway="local",
    model_defaults=ModelDefaultsConfig(dialect="duckdb", start="2026-11-01", cron="@daily"),
    # The external source `raw.customers` stands for a table another system loads.
    before_all=[
        "CREATE SCHEMA IF NOT EXISTS raw",
        "CREATE TABLE IF NOT EXISTS raw.customers AS SELECT * FROM (VALUES "
        "(1, 'Ada', 'gold'), (2, 'Grace', 'silver'), (3, 'Linus', 'gold'), (4, 'Barbara', 'bronze')"
        ") AS t(customer_id, name, tier)",
    ],
)
