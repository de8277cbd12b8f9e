"""A repository with a SQLMesh project and a dbt project, both on one PostgreSQL database.

- SQLMesh project ``up``: model ``upstream.orders`` (two rows).
- dbt project ``marts`` (dbt-postgres): source ``up.orders`` is the relation
  ``upstream.orders``, i.e. the SQLMesh model; ``from_sqlmesh`` reads it. ``slow_a`` waits
  while a test holds it back (:func:`slow_a_held`: a window for overlapping runs, as long as
  the test needs and no longer); ``b`` and ``d`` read ``slow_a``;
  ``c`` is independent. Every dbt model appends (model, invocation) to ``platform_log.builds``
  as it is built, so a test counts how often each model was built.

The connection comes from ``PLATFORM_PG_URL`` (SQLMesh) and ``PLATFORM_PG_*`` (dbt's profile).
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from projects.deployment import execute_sql, write_deployment

SQLMESH_CONFIG = """
import os

import sqlalchemy as sa
from sqlmesh.core.config import Config, GatewayConfig, ModelDefaultsConfig, PostgresConnectionConfig

url = sa.engine.make_url(os.environ["PLATFORM_PG_URL"])
config = Config(
    gateways={
        "pg": GatewayConfig(
            connection=PostgresConnectionConfig(
                host=url.host or url.query.get("host"), port=url.port or int(url.query.get("port", 5432)), user=url.username, password=url.password or "",
                database=url.database, concurrent_tasks=2,
            )
        )
    },
    default_gateway="pg",
    model_defaults=ModelDefaultsConfig(dialect="postgres", start="2026-11-20", cron="@daily"),
)
"""

PROFILES = """
marts:
  target: pg
  outputs:
    pg:
      type: postgres
      host: "{{ env_var('PLATFORM_PG_HOST') }}"
      port: "{{ env_var('PLATFORM_PG_PORT') | int }}"
      user: "{{ env_var('PLATFORM_PG_USER') }}"
      password: "{{ env_var('PLATFORM_PG_PASSWORD', '') }}"
      dbname: "{{ env_var('PLATFORM_PG_DB') }}"
      schema: marts
      threads: 4
"""

DBT_PROJECT = """
name: marts
version: "1.0.0"
config-version: 2
profile: marts
model-paths: ["models"]
target-path: target
models:
  marts:
    +materialized: table
    +post-hook: "insert into platform_log.builds (model, invocation) values ('{{ this.name }}', '{{ invocation_id }}')"
"""

# The advisory lock building slow_a takes (for its transaction): free unless a test holds it.
SLOW_A_GATE = 730_001

DBT_MODELS = {
    "sources.yml": """
        version: 2
        sources:
          - name: up
            schema: upstream
            tables:
              - name: orders
    """,
    "slow_a.sql": f"select 1 as id from (select pg_advisory_xact_lock({SLOW_A_GATE})) as s\n",
    "b.sql": "select id from {{ ref('slow_a') }}\n",
    "d.sql": "select id + 1 as id from {{ ref('slow_a') }}\n",
    "c.sql": "select 2 as id\n",
    "from_sqlmesh.sql": "select id from {{ source('up', 'orders') }}\n",
}


def environment(postgres_url: str) -> dict[str, str]:
    url = sa.engine.make_url(postgres_url)
    return {
        "PLATFORM_PG_URL": postgres_url,
        "PLATFORM_PG_HOST": url.host or url.query.get("host") or "localhost",
        "PLATFORM_PG_PORT": str(url.port or url.query.get("port") or 5432),
        "PLATFORM_PG_USER": url.username or "",
        "PLATFORM_PG_PASSWORD": url.password or "",
        "PLATFORM_PG_DB": url.database or "",
    }


def create_repository(root: Path, postgres_url: str) -> Path:
    up = root / "up_project"
    (up / "models").mkdir(parents=True)
    (up / "config.py").write_text(textwrap.dedent(SQLMESH_CONFIG))
    (up / "models" / "orders.sql").write_text(
        "MODEL (name upstream.orders, kind FULL);\nSELECT 1 AS id UNION ALL SELECT 2 AS id\n"
    )
    marts = root / "marts_project"
    (marts / "models").mkdir(parents=True)
    (marts / "profiles.yml").write_text(PROFILES)
    (marts / "dbt_project.yml").write_text(DBT_PROJECT)
    for name, text in DBT_MODELS.items():
        (marts / "models" / name).write_text(textwrap.dedent(text).lstrip())
    write_deployment(root, {"up": ("sqlmesh", "up_project"), "marts": ("dbt", "marts_project")})
    execute_sql(
        postgres_url,
        "CREATE SCHEMA platform_log",
        "CREATE TABLE platform_log.builds (model TEXT, invocation TEXT, at TIMESTAMPTZ DEFAULT clock_timestamp())",
    )
    return root


def builds(postgres_url: str) -> list[tuple[str, str]]:
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT model, invocation FROM platform_log.builds ORDER BY at")).fetchall()
    engine.dispose()
    return [(model, invocation) for model, invocation in rows]


@contextmanager
def slow_a_held(postgres_url: str) -> Iterator[None]:
    """While the block runs, a build of ``slow_a`` waits in the warehouse (its lock is held)."""
    engine = sa.create_engine(postgres_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": SLOW_A_GATE})
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": SLOW_A_GATE})
    finally:
        engine.dispose()
