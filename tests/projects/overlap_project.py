"""A SQLMesh project on PostgreSQL (warehouse and state) for tests of overlapping runs.

Every model is a Python model that sleeps briefly, then appends (project, model, pid, interval,
when it started) to `overlap_audit.log`, then returns its one row: the audit table shows every
evaluation of every interval, and when each ran. Several projects (one schema each) may share
the warehouse and the audit table. `OVERLAP_SLOW_MODEL` + `OVERLAP_SLOW_MARKER` make one model create the
marker file and sleep `OVERLAP_SLOW_SECONDS` the first time it runs (a window in which a
test kills the run or re-plans the environment); with `OVERLAP_SLOW_GATE` the sleep ends
early once that file exists (the test decides when the slow batch finishes).
"""

from __future__ import annotations

import textwrap
from datetime import date, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from projects.deployment import execute_sql, write_deployment

LAYERS = 3
WIDTH = 3
DAYS = 2


def model_names() -> list[str]:
    return [f"m_{layer}_{i}" for layer in range(LAYERS) for i in range(WIDTH)]


def parents(name: str) -> list[str]:
    _, layer, i = name.split("_")
    layer, i = int(layer), int(i)
    if layer == 0:
        return []
    return sorted({f"m_{layer - 1}_{i}", f"m_{layer - 1}_{(i + 1) % WIDTH}"})


MODEL_TEMPLATE = """
import os
import time
from datetime import datetime, timezone

import pandas as pd
from sqlmesh import ExecutionContext, model
from sqlmesh.core.model.kind import ModelKindName


@model(
    "{schema}.{name}",
    kind=dict(name=ModelKindName.INCREMENTAL_BY_TIME_RANGE, time_column="ds", batch_size=1),
    columns={{"ds": "date", "model": "text", "version": "int"}},
    depends_on=[{depends_on}],
    start="{start}",
    cron="@daily",
)
def execute(context: ExecutionContext, start, end, execution_time, **kwargs) -> pd.DataFrame:
    started_at = datetime.now(timezone.utc).isoformat()
    marker = os.environ.get("OVERLAP_SLOW_MARKER")
    if marker and os.environ.get("OVERLAP_SLOW_MODEL") == "{name}" and not os.path.exists(marker):
        open(marker, "w").close()
        gate = os.environ.get("OVERLAP_SLOW_GATE")
        deadline = time.monotonic() + float(os.environ.get("OVERLAP_SLOW_SECONDS", "60"))
        while time.monotonic() < deadline and not (gate and os.path.exists(gate)):
            time.sleep(0.05)
    time.sleep(float(os.environ.get("OVERLAP_SLEEP_SECONDS", "0.3")))
    context.engine_adapter.execute(
        "INSERT INTO overlap_audit.log (project, model, pid, interval_start, interval_end, started_at) VALUES "
        f"('{schema}', '{name}', {{os.getpid()}}, '{{start.isoformat()}}', '{{end.isoformat()}}', '{{started_at}}')"
    )
    return pd.DataFrame({{"ds": [start.date()], "model": ["{name}"], "version": [{version}]}})
"""

CONFIG_TEMPLATE = """
import os

import sqlalchemy as sa
from sqlmesh.core.config import Config, GatewayConfig, ModelDefaultsConfig, PostgresConnectionConfig

url = sa.engine.make_url(os.environ["OVERLAP_PG_URL"])
config = Config(
    gateways={
        "pg": GatewayConfig(
            connection=PostgresConnectionConfig(
                host=url.host or url.query.get("host"), port=url.port or int(url.query.get("port", 5432)),
                user=url.username, password=url.password or "",
                database=url.database, concurrent_tasks=5,
            ),
            # Projects sharing the database keep their own SQLMesh state: environments are per state.
            state_schema="STATE_SCHEMA",
        )
    },
    default_gateway="pg",
    model_defaults=ModelDefaultsConfig(dialect="postgres"),
)
"""


def write_model(project_dir: Path, name: str, version: int = 1, schema: str = "overlap") -> None:
    depends_on = ", ".join(f'"{schema}.{p}"' for p in parents(name))
    start = (date.today() - timedelta(days=DAYS)).isoformat()
    (project_dir / "models" / f"{name}.py").write_text(
        MODEL_TEMPLATE.format(name=name, depends_on=depends_on, start=start, version=version, schema=schema)
    )


def create_repository(root: Path, postgres_url: str, projects: tuple[str, ...] = ("overlap",)) -> Path:
    """A repository with `.dagctl/config.yaml`, `definitions.py` and the projects (each its own
    schema, in `<project>_project/`); audit table created."""
    for schema in projects:
        project_dir = root / f"{schema}_project"
        (project_dir / "models").mkdir(parents=True)
        state_schema = "sqlmesh" if schema == "overlap" else f"sqlmesh_{schema}"
        (project_dir / "config.py").write_text(textwrap.dedent(CONFIG_TEMPLATE).replace("STATE_SCHEMA", state_schema))
        for name in model_names():
            write_model(project_dir, name, schema=schema)
    write_deployment(root, {schema: ("sqlmesh", f"{schema}_project") for schema in projects})
    execute_sql(
        postgres_url,
        "CREATE SCHEMA IF NOT EXISTS overlap_audit",
        "CREATE TABLE overlap_audit.log (project TEXT, model TEXT, pid INT, interval_start TEXT, interval_end TEXT, "
        "started_at TIMESTAMPTZ, recorded_at TIMESTAMPTZ DEFAULT clock_timestamp())",
    )
    return root


def expected_intervals() -> set[tuple[str, str]]:
    first = date.today() - timedelta(days=DAYS)
    return {(name, (first + timedelta(days=d)).isoformat()) for name in model_names() for d in range(DAYS)}


def audit_rows(postgres_url: str) -> list[tuple[str, int, str]]:
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT model, pid, interval_start FROM overlap_audit.log")).fetchall()
    engine.dispose()
    return [(model, pid, start[:10]) for model, pid, start in rows]


def evaluation_spans(postgres_url: str) -> list[tuple[str, str, str, datetime, datetime]]:
    """(project, model, interval start day, started, finished) of every evaluation."""
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT project, model, interval_start, started_at, recorded_at FROM overlap_audit.log")
        ).fetchall()
    engine.dispose()
    return [(project, model, start[:10], began, ended) for project, model, start, began, ended in rows]


def most_at_once(spans: list[tuple[str, str, str, datetime, datetime]]) -> int:
    """The largest number of evaluations whose [started, finished] spans overlap at one moment."""
    edges = sorted(
        [(began, 1) for *_, began, _ in spans] + [(ended, -1) for *_, ended in spans], key=lambda e: (e[0], e[1])
    )
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak
