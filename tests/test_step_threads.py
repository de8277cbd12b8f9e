"""Step threads are reused from model to model, as `sqlmesh run` reuses its workers.

A SQLMesh project on PostgreSQL (SQLMesh's default of a connection per worker thread),
reached through a TCP proxy that counts connections, runs its models through the real
`dagster job execute`: the run opens about as many warehouse connections as models run at
once, not one per model, and every model is still evaluated.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from projects.deployment import plan_without_backfill
from projects.sqlmesh_repo import run_job, write_repository
from tcp_proxy import TcpProxy

MODEL_COUNT = 12
CONCURRENT_TASKS = 2

PG_CONFIG = f"""\
gateways:
  pg:
    connection:
      type: postgres
      host: 127.0.0.1
      port: "{{{{ env_var('STEP_THREADS_PG_PORT') }}}}"
      user: "{{{{ env_var('STEP_THREADS_PG_USER') }}}}"
      password: "{{{{ env_var('STEP_THREADS_PG_PASSWORD', '') }}}}"
      database: "{{{{ env_var('STEP_THREADS_PG_DATABASE') }}}}"
      concurrent_tasks: {CONCURRENT_TASKS}
    state_connection:
      type: duckdb
      database: state.duckdb

default_gateway: pg

model_defaults:
  dialect: postgres
  start: 2026-11-20
  cron: '@daily'
"""


def _models() -> dict[str, str]:
    models = {"source.sql": "MODEL (name demo.source, kind FULL);\nSELECT generate_series(1, 50) AS id\n"}
    for index in range(MODEL_COUNT - 1):
        models[f"m{index:02d}.sql"] = (
            f"MODEL (name demo.m{index:02d}, kind FULL);\nSELECT id, id * {index} AS value FROM demo.source\n"
        )
    return models


@pytest.fixture
def warehouse_proxy(postgres_url: str, monkeypatch) -> Iterator[tuple[TcpProxy, str]]:
    url = sa.engine.make_url(postgres_url)
    socket_dir = url.query.get("host")
    port = url.port or 5432
    upstream = f"{socket_dir}/.s.PGSQL.{port}" if socket_dir else (url.host, port)
    with TcpProxy(upstream) as proxy:
        monkeypatch.setenv("STEP_THREADS_PG_PORT", str(proxy.port))
        monkeypatch.setenv("STEP_THREADS_PG_USER", url.username or "")
        monkeypatch.setenv("STEP_THREADS_PG_PASSWORD", url.password or "")
        monkeypatch.setenv("STEP_THREADS_PG_DATABASE", url.database or "")
        yield proxy, postgres_url


def test_a_run_reuses_warehouse_connections_across_model_steps(
    tmp_path: Path, warehouse_proxy: tuple[TcpProxy, str]
) -> None:
    proxy, postgres_url = warehouse_proxy
    root = write_repository(tmp_path / "repo", _models())
    (root / "project" / "config.yaml").write_text(PG_CONFIG)
    plan_without_backfill(root / "project")
    before = proxy.accepted

    result = run_job(root, tmp_path / "home", tmp_path / "elsewhere")

    assert result.returncode == 0, result.output[-6000:]
    opened = proxy.accepted - before
    # One per step thread (at most CONCURRENT_TASKS), plus the preparing thread's.
    assert opened <= CONCURRENT_TASKS + 1, f"{opened} warehouse connections for {MODEL_COUNT} model steps"
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as conn:
            counts = {
                row.table_name: conn.execute(sa.text(f'SELECT count(*) FROM sqlmesh__demo."{row.table_name}"')).scalar()
                for row in conn.execute(
                    sa.text("SELECT table_name FROM information_schema.tables WHERE table_schema = 'sqlmesh__demo'")
                )
            }
    finally:
        engine.dispose()
    assert len(counts) == MODEL_COUNT
    assert set(counts.values()) == {50}


def test_step_workers_reuse_an_idle_thread_and_end_each_thread_once_on_itself() -> None:
    import threading

    from dagctl_dagster.execution.step_workers import StepWorkers

    ended: list[str] = []
    ran_on: dict[str, str] = {}
    workers = StepWorkers(on_thread_end=lambda: ended.append(threading.current_thread().name))
    second_started = threading.Event()

    def run(key: str):
        return lambda: ran_on.__setitem__(key, threading.current_thread().name)

    workers.start("a", run("a"), finished=lambda: workers.start("b", run("b"), finished=second_started.set))
    assert second_started.wait(10)
    assert workers.wait(10)
    workers.close(10)

    assert ran_on["a"] == ran_on["b"], "a step started after another finished runs on the same thread"
    assert ended == [ran_on["a"]], "each thread ends once, and tells the frameworks on itself"
    assert workers.running == []


def test_a_step_body_that_raises_leaves_its_thread_serving_the_next_step() -> None:
    import threading

    from dagctl_dagster.execution.step_workers import StepWorkers

    workers = StepWorkers(on_thread_end=lambda: None)
    first_finished, second_ran = threading.Event(), threading.Event()

    def broken() -> None:
        raise RuntimeError("a bug in a step body")

    workers.start("a", broken, finished=first_finished.set)
    assert first_finished.wait(10), "finished runs even when the body raised"
    workers.start("b", second_ran.set, finished=lambda: None)
    assert second_ran.wait(10), "the reused idle thread is still alive and runs the next step"
    assert workers.wait(10) and workers.running == []
    workers.close(10)
