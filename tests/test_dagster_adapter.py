"""Pins the Dagster private behaviour the executor adapter relies on.

When Dagster is upgraded, this file says what changed before any run does.
"""

from __future__ import annotations

import dagster as dg
import pytest
from dagster import DagsterInstance

from dagctl_dagster.execution import dagster_adapter as adapter
from dagctl_dagster.execution.executor import claim_aware_executor

HOOK_CALLS: list[str] = []


def test_dagster_is_the_tested_minor_version():
    assert ".".join(dg.__version__.split(".")[:2]) == adapter.TESTED_DAGSTER_MINOR


def test_active_execution_keeps_the_state_the_adapter_reads():
    plan_state = adapter.ActiveExecution.__init__.__code__.co_names
    for attribute in ("_abandoned", "_failed", "_skipped", "_in_flight"):
        assert attribute in plan_state, f"ActiveExecution no longer has {attribute}"
    for method in ("get_steps_to_execute", "plan_events_iterator", "handle_event", "mark_skipped", "verify_complete"):
        assert callable(getattr(adapter.ActiveExecution, method))


@dg.failure_hook(name="record_failure")
def record_failure(context: dg.HookContext):
    HOOK_CALLS.append(f"failure:{context.op.name}")


@dg.success_hook(name="record_success")
def record_success(context: dg.HookContext):
    HOOK_CALLS.append(f"success:{context.op.name}")


@dg.asset
def fine() -> None:
    return None


@dg.asset(deps=[fine])
def broken() -> None:
    raise RuntimeError("broken on purpose")


hooked_job = dg.define_asset_job(
    "hooked", selection=[fine, broken], executor_def=claim_aware_executor, hooks={record_failure, record_success}
)
defs = dg.Definitions(assets=[fine, broken], jobs=[hooked_job])


def get_hooked_job() -> dg.JobDefinition:
    return defs.resolve_job_def("hooked")


@pytest.mark.timeout(120)
def test_hooks_run_for_steps_the_executor_runs_in_threads(dagster_home):
    HOOK_CALLS.clear()
    with DagsterInstance.get() as instance:
        result = dg.execute_job(dg.reconstructable(get_hooked_job), instance, raise_on_error=False)
        hook_events = [e.event_type_value for e in result.all_events if e.event_type_value.startswith("HOOK")]
    assert not result.success
    assert sorted(HOOK_CALLS) == ["failure:broken", "success:fine"]
    assert hook_events.count("HOOK_COMPLETED") == 2
    # Each step had one hook whose condition did not hold: no event is written for it.
    assert "HOOK_SKIPPED" not in hook_events


def _engine_events(instance: DagsterInstance, run_id: str) -> list[str]:
    return [entry.dagster_event.message for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)]


def _write_events_from_threads(instance: DagsterInstance, run, count: int, threads: int) -> None:
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda i: instance.report_engine_event(f"event {i}", run), range(count)))


def test_sqlite_event_storage_keeps_one_connection_per_database_during_the_block(dagster_home):
    with DagsterInstance.get() as instance:
        run = instance.create_run_for_job(dg.GraphDefinition("g").to_job())
        storage = instance.event_log_storage
        with adapter.storage_connections_held_open(instance, max_connections=5):
            with storage.run_connection(run.run_id) as first:
                first_dbapi = first.connection.dbapi_connection
            with storage.run_connection(run.run_id) as second:
                second_dbapi = second.connection.dbapi_connection
            _write_events_from_threads(instance, run, count=60, threads=5)
        assert first_dbapi is second_dbapi
        assert "_connect" not in vars(storage), "the storage's own connect must be back after the block"
        with storage.run_connection(run.run_id) as after:
            assert after.connection.dbapi_connection is not first_dbapi
        messages = _engine_events(instance, run.run_id)
    assert sorted(messages) == sorted(f"event {i}" for i in range(60))


def test_postgres_storage_gets_pooled_connections_for_the_run(tmp_path, monkeypatch, postgres_url):
    from sqlalchemy.pool import NullPool

    home = tmp_path / "pg_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        f"telemetry:\n  enabled: false\nstorage:\n  postgres:\n    postgres_url: {postgres_url}\n"
    )
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with DagsterInstance.get() as instance:
        run = instance.create_run_for_job(dg.GraphDefinition("g").to_job())
        assert isinstance(instance.event_log_storage._engine.pool, NullPool)
        with adapter.storage_connections_held_open(instance, max_connections=5):
            assert not isinstance(instance.event_log_storage._engine.pool, NullPool)
            assert not isinstance(instance.run_storage._engine.pool, NullPool)
            _write_events_from_threads(instance, run, count=30, threads=5)
        messages = _engine_events(instance, run.run_id)
    assert sorted(messages) == sorted(f"event {i}" for i in range(30))
