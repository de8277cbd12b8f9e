"""SQLMesh config of the bundled example: DuckDB warehouse and state beside this file.

`SQLMESH_EXAMPLE_DB` overrides the warehouse file (tests point it into a temporary directory).
"""

import os
from pathlib import Path

from sqlmesh.core.config import Config, DuckDBConnectionConfig, GatewayConfig, ModelDefaultsConfig

HERE = Path(__file__).resolve().parent
DATABASE = os.environ.get("SQLMESH_EXAMPLE_DB", str(HERE / "warehouse.duckdb"))

config = Config(
    gateways={
        "local": GatewayConfig(
            connection=DuckDBConnectionConfig(database=DATABASE, concurrent_tasks=5),
        )
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
