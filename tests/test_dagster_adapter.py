"""Pins the Dagster private behaviour the executor adapter relies on.

When Dagster is upgraded, this file says what changed before any run does.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from conftest import instance_home
from dagster import DagsterInstance
from declared import assert_seam_covers

from dagctl_dagster.execution import dagster_adapter as adapter
from dagctl_dagster.execution.executor import claim_aware_executor
from dagctl_dagster.names import failure_hook_name

HOOK_CALLS: list[str] = []


def test_the_adapter_states_the_dagster_range_pyproject_declares():
    assert_seam_covers("dagster", adapter.TESTED_DAGSTER)


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


@dg.success_hook(name=failure_hook_name("probe"))
def named_as_failure_only(context: dg.HookContext):
    HOOK_CALLS.append(f"failure-only name:{context.op.name}")


@dg.asset
def fine() -> None:
    return None


@dg.asset(deps=[fine])
def broken() -> None:
    raise RuntimeError("broken on purpose")


hooked_job = dg.define_asset_job(
    "hooked",
    selection=[fine, broken],
    executor_def=claim_aware_executor,
    hooks={record_failure, record_success, named_as_failure_only},
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
    # A hook named as acting only on failure is not even called for a step that succeeded.
    assert sorted(HOOK_CALLS) == ["failure:broken", "success:fine"]
    assert hook_events.count("HOOK_COMPLETED") == 2
    # Each step had one hook whose condition did not hold: no event is written for it.
    assert "HOOK_SKIPPED" not in hook_events


def _engine_events(instance: DagsterInstance, run_id: str) -> list[str]:
    return [
        entry.dagster_event.message for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)
    ]


def _write_events_from_threads(instance: DagsterInstance, run, count: int, threads: int) -> None:
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda i: instance.report_engine_event(f"event {i}", run), range(count)))


def _kept_engines(storage) -> dict:
    return dict(vars(storage).get("_dagctl_kept_open_engines") or {})


def test_sqlite_event_storage_reuses_one_connection_per_database_file(dagster_home):
    assert adapter.keep_sqlite_event_connections_open(force=True)
    with DagsterInstance.get() as instance:
        run = instance.create_run_for_job(dg.GraphDefinition("g").to_job())
        storage = instance.event_log_storage
        with storage.run_connection(run.run_id) as first:
            first_dbapi = first.connection.dbapi_connection
        with storage.run_connection(run.run_id) as second:
            second_dbapi = second.connection.dbapi_connection
        _write_events_from_threads(instance, run, count=60, threads=5)
        assert first_dbapi is second_dbapi
        assert set(_kept_engines(storage)) == {run.run_id, "index"}
        messages = _engine_events(instance, run.run_id)
    assert sorted(messages) == sorted(f"event {i}" for i in range(60))
    assert _kept_engines(storage) == {}, "dispose() closes the kept engines"


def _materialize_with_tags(instance: DagsterInstance, run, key: dg.AssetKey, index: int) -> None:
    from dagster._core.events import DagsterEvent, DagsterEventType, StepMaterializationData

    materialization = dg.AssetMaterialization(asset_key=key, tags={"dagster/data_version": f"v{index}"})
    instance.report_dagster_event(
        DagsterEvent(
            event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value,
            job_name=run.job_name,
            event_specific_data=StepMaterializationData(materialization),
        ),
        run_id=run.run_id,
    )


def test_sqlite_tagged_materializations_reuse_kept_connections(dagster_home, monkeypatch):
    """Per event: no new engine for Dagster's table check, no pool ROLLBACK; the tags are stored."""
    from dagster._core.storage.event_log.sqlite import sqlite_event_log

    adapter.keep_sqlite_event_connections_open(force=True)
    new_engines: list[str] = []
    original_create_engine = sqlite_event_log.create_engine

    def counting_create_engine(*args, **kwargs):
        new_engines.append(str(args[0]))
        return original_create_engine(*args, **kwargs)

    with DagsterInstance.get() as instance:
        run = instance.create_run_for_job(dg.GraphDefinition("g").to_job())
        key = dg.AssetKey(["p", "tagged"])
        _materialize_with_tags(instance, run, key, 0)
        rollbacks: list[object] = []
        for engine in _kept_engines(instance.event_log_storage).values():
            original_rollback = engine.dialect.do_rollback
            monkeypatch.setattr(
                engine.dialect, "do_rollback", lambda conn, _o=original_rollback: (rollbacks.append(conn), _o(conn))
            )
        monkeypatch.setattr(sqlite_event_log, "create_engine", counting_create_engine)
        for index in range(1, 6):
            _materialize_with_tags(instance, run, key, index)
        tags = instance.get_latest_data_version_record(key)
        stored = instance.event_log_storage.get_event_tags_for_asset(key)
    assert new_engines == [], "the asset_event_tags table check was answered without a new engine"
    assert rollbacks == [], "kept connections are not rolled back on every checkin (each use commits)"
    assert tags is not None
    assert sorted(t["dagster/data_version"] for t in stored) == [f"v{i}" for i in range(6)]


def test_sqlite_kept_connections_write_ahead_without_a_sync_per_commit(dagster_home):
    """The run's event log commits go to Dagster's write-ahead log, synced at checkpoints
    (NORMAL, 1), not at every commit (SQLite's default FULL, 2); events are all readable."""
    adapter.keep_sqlite_event_connections_open(force=True)
    with DagsterInstance.get() as instance:
        run = instance.create_run_for_job(dg.GraphDefinition("g").to_job())
        key = dg.AssetKey(["p", "synced"])
        for index in range(3):
            _materialize_with_tags(instance, run, key, index)
        engines = _kept_engines(instance.event_log_storage)
        assert engines, "the run's shards are on kept engines"
        for engine in engines.values():
            with engine.connect() as connection:
                assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1
        stored = instance.event_log_storage.get_event_tags_for_asset(key)
    assert sorted(t["dagster/data_version"] for t in stored) == [f"v{i}" for i in range(3)]


def test_sqlite_table_check_asks_again_after_wipe(dagster_home):
    adapter.keep_sqlite_event_connections_open(force=True)
    with DagsterInstance.get() as instance:
        storage = instance.event_log_storage
        assert storage.has_table("asset_event_tags")
        assert "asset_event_tags" in vars(storage)["_dagctl_known_tables"]
        assert not storage.has_table("no_such_table")  # absent tables are asked again, never cached
        assert "no_such_table" not in vars(storage)["_dagctl_known_tables"]
        instance.wipe()
        assert storage.has_table("asset_event_tags")  # wipe() re-creates the schema
        assert not storage.has_table("no_such_table")


def test_sqlite_kept_engines_are_bounded_and_evicted_shards_still_read_and_write(dagster_home):
    adapter.keep_sqlite_event_connections_open(force=True)
    with DagsterInstance.get() as instance:
        job = dg.GraphDefinition("g").to_job()
        runs = [instance.create_run_for_job(job) for _ in range(adapter.KEPT_OPEN_SQLITE_SHARDS + 3)]
        instance.get_asset_records()  # the index shard is used first, then only run shards
        for run in runs:
            instance.report_engine_event(f"first {run.run_id}", run)
        kept = _kept_engines(instance.event_log_storage)
        assert len(kept) == adapter.KEPT_OPEN_SQLITE_SHARDS
        assert "index" in kept  # least recently used, but kept: every asset event and read needs it
        assert runs[0].run_id not in kept  # the oldest run's shard was evicted
        instance.report_engine_event(f"again {runs[0].run_id}", runs[0])
        assert _engine_events(instance, runs[0].run_id)[-2:] == [f"first {runs[0].run_id}", f"again {runs[0].run_id}"]


def test_wiping_a_sqlite_instance_with_kept_connections_loses_no_later_event(dagster_home):
    """wipe() deletes run files: writes after it must reach new files, not the deleted ones."""
    adapter.keep_sqlite_event_connections_open(force=True)
    with DagsterInstance.get() as instance:
        job = dg.GraphDefinition("g").to_job()
        before = instance.create_run_for_job(job)
        instance.report_engine_event("before wipe", before)
        instance.wipe()
        assert before.run_id not in _kept_engines(instance.event_log_storage)  # its file is gone
        after = instance.create_run_for_job(job)
        instance.report_engine_event("after wipe", after)
        assert _engine_events(instance, after.run_id) == ["after wipe"]
        assert (dagster_home / "history" / "runs" / f"{after.run_id}.db").exists()
    with DagsterInstance.get() as reopened:  # another process's view: the event is on disk
        assert _engine_events(reopened, after.run_id) == ["after wipe"]


def test_a_code_location_load_patches_storages_only_where_they_are_already_imported(tmp_path, postgres_url):
    """A code server's load must not import SQLAlchemy for it; a CLI process with an instance
    is patched for that instance's storage: SQLite keeps its connections, PostgreSQL creates
    runs on one connection."""
    import subprocess
    import sys

    from conftest import copy_repository

    repo = copy_repository(tmp_path / "repo")
    probe = (
        "import sys; from dagctl_dagster import load_definitions\n"
        "{setup}"
        "load_definitions('.dagctl/config.yaml')\n"
        "import dagster as dg\n"
        "from dagctl_dagster.execution import dagster_adapter as a\n"
        "module = sys.modules.get(a.SQLITE_EVENT_LOG_MODULE)\n"
        "print(module is not None, bool(module and getattr(module.SqliteEventLogStorage, '_dagctl_kept_open', False)),"
        " a.POSTGRES_EVENT_LOG_MODULE in sys.modules, getattr(dg.DagsterInstance, a._POOLED_RUN_CREATION_ATTR, False))\n"
    )
    instance_first = "import dagster as dg; dg.DagsterInstance.from_config({home!r}).get_runs()\n"
    setups = {
        "code server": "",
        "CLI with a SQLite instance": instance_first.format(home=str(instance_home(tmp_path / "home"))),
        "CLI with a PostgreSQL instance": instance_first.format(
            home=str(instance_home(tmp_path / "pg_home", postgres_url))
        ),
    }
    outputs = {}
    for name, setup in setups.items():
        completed = subprocess.run(
            [sys.executable, "-c", probe.format(setup=setup)], cwd=repo, capture_output=True, text=True, timeout=240
        )
        assert completed.returncode == 0, completed.stderr[-2000:]
        outputs[name] = completed.stdout.strip().splitlines()[-1]
    assert outputs == {
        "code server": "False False False False",
        "CLI with a SQLite instance": "True True False False",
        "CLI with a PostgreSQL instance": "True True True True",
    }


def test_postgres_storage_gets_pooled_connections_for_the_run(tmp_path, monkeypatch, postgres_url):
    from sqlalchemy.pool import NullPool

    home = instance_home(tmp_path / "pg_home", postgres_url)
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


def _job_of_assets(count: int) -> dg.JobDefinition:
    def no_op(name: str) -> dg.AssetsDefinition:
        @dg.asset(name=name)
        def _asset() -> None:
            return None

        return _asset

    return dg.Definitions(
        assets=[no_op(f"a{i}") for i in range(count)], jobs=[dg.define_asset_job("all")]
    ).resolve_job_def("all")


def _connections_opened_by(block) -> int:
    """New database connections any SQLAlchemy pool of this process opened while ``block`` ran."""
    import sqlalchemy as sa

    opened: list[object] = []

    def count(dbapi_connection, _record) -> None:
        opened.append(dbapi_connection)

    sa.event.listen(sa.pool.Pool, "connect", count)
    try:
        block()
    finally:
        sa.event.remove(sa.pool.Pool, "connect", count)
    return len(opened)


def test_postgres_run_creation_writes_its_planned_events_on_one_connection_and_keeps_none(
    postgres_dagster_home, postgres_url
):
    """Creating a run of 40 assets: not two new server connections per planned event; every
    event stored; afterwards the storage connects per call again and holds no connection."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    assert adapter.pool_postgres_event_connections_while_creating_runs(force=True)
    job = _job_of_assets(40)
    with DagsterInstance.get() as instance:
        created = []
        opened = _connections_opened_by(lambda: created.append(instance.create_run_for_job(job)))
        planned = instance.get_records_for_run(
            created[0].run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED
        ).records
        assert isinstance(instance.event_log_storage._engine.pool, NullPool)
    assert len(planned) == 40
    assert opened < 10, f"{opened} connections for 40 planned events"
    probe = sa.create_engine(postgres_url, poolclass=NullPool)
    with probe.connect() as connection:
        others = connection.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar()
    probe.dispose()
    assert others == 0


def test_check_verdicts_are_those_evaluated_on_the_latest_materialization(dagster_home):
    """What a no-op SQLMesh step reports again: a check's last result, only while it was
    evaluated on the asset's latest materialization (Dagster's check history by status)."""
    failing = {"value": False}

    @dg.asset(check_specs=[dg.AssetCheckSpec("positive", asset="numbers")])
    def numbers():
        yield dg.MaterializeResult(
            check_results=[dg.AssetCheckResult(check_name="positive", passed=not failing["value"])]
        )

    key = dg.AssetCheckKey(dg.AssetKey("numbers"), "positive")
    with DagsterInstance.get() as instance:
        assert adapter.verdicts_on_latest_materialization(instance, [key]) == {}
        first = dg.materialize([numbers], instance=instance)
        [verdict] = adapter.verdicts_on_latest_materialization(instance, [key]).values()
        assert (verdict.passed, verdict.run_id) == (True, first.run_id)
        failing["value"] = True
        dg.materialize([numbers], instance=instance)
        [verdict] = adapter.verdicts_on_latest_materialization(instance, [key]).values()
        assert verdict.passed is False
        # A newer materialization without a check result: the last verdict is of older data.
        instance.report_runless_asset_event(dg.AssetMaterialization("numbers"))
        assert adapter.verdicts_on_latest_materialization(instance, [key]) == {}


def _instance_home_of(storage_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """A new instance's home on SQLite or on the test PostgreSQL."""
    if storage_kind == "postgres":
        return instance_home(tmp_path / "home", request.getfixturevalue("postgres_url"))
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return home


@pytest.mark.parametrize("storage_kind", ["sqlite", "postgres"])
def test_event_log_schema_questions_are_asked_once_while_the_run_holds_the_storage(
    storage_kind, tmp_path, monkeypatch, request
):
    """Dagster's SQL event logs reflect `asset_keys`, read the data-migration table and look
    tables up on every data-version read and materialization; the adapter remembers the
    answers during a run, for the run's storage object only, and forgets them after."""
    import collections

    home = _instance_home_of(storage_kind, tmp_path, request)
    asked: collections.Counter[tuple[str, str]] = collections.Counter()

    with DagsterInstance.from_config(str(home)) as instance:
        storage = instance.event_log_storage
        storage_class = type(storage)
        # What the adapter wraps: Dagster's own schema questions, by these names and arguments.
        assert storage.has_asset_key_col("last_materialization_timestamp")
        assert storage.has_secondary_index("asset_key_index_columns")
        assert storage.has_table("asset_event_tags")
        for name in ("_has_asset_key_col_on_connection", "has_secondary_index", "has_table"):
            original = getattr(storage_class, name)

            def counting(self, *args, _name=name, _original=original):
                asked[(_name, args[-1])] += 1
                return _original(self, *args)

            monkeypatch.setattr(storage_class, name, counting)

        with adapter.storage_connections_held_open(instance, max_connections=2):
            for index in range(3):
                instance.report_runless_asset_event(dg.AssetMaterialization(f"a{index}"))
                instance.get_asset_records([dg.AssetKey(f"a{index}")])
            assert not storage.has_asset_key_col("no_such_column")
            assert not storage.has_asset_key_col("no_such_column")  # a missing column is asked again
            assert len(instance.get_asset_records()) == 3

        assert asked[("_has_asset_key_col_on_connection", "no_such_column")] == 2
        del asked[("_has_asset_key_col_on_connection", "no_such_column")]
        assert asked and set(asked.values()) == {1}, asked  # each present one once, not per read or write
        assert not any(name in vars(storage) for name in adapter._SCHEMA_MEMO_ATTRS)
        storage.has_asset_key_col("cached_status_data")
        assert asked[("_has_asset_key_col_on_connection", "cached_status_data")] == 2  # asked again after the block


@dg.asset
def upstream_a() -> dg.MaterializeResult:
    return dg.MaterializeResult(data_version=dg.DataVersion("a-1"))


@dg.asset(deps=[upstream_a])
def middle_b() -> dg.MaterializeResult:
    return dg.MaterializeResult()


@dg.asset(deps=[middle_b, upstream_a])
def last_c() -> dg.MaterializeResult:
    return dg.MaterializeResult()


chain_job = dg.define_asset_job("chain", executor_def=claim_aware_executor)
chain_defs = dg.Definitions(assets=[upstream_a, middle_b, last_c], jobs=[chain_job])


def get_chain_job() -> dg.JobDefinition:
    return chain_defs.resolve_job_def("chain")


def _input_pointers(instance: DagsterInstance) -> dict[str, dict[str, tuple[int, str]]]:
    """Each asset's latest materialization: its upstream → (input event pointer, input data version)."""
    found: dict[str, dict[str, tuple[int, str]]] = {}
    for key in (dg.AssetKey("middle_b"), dg.AssetKey("last_c")):
        tags = instance.get_latest_materialization_event(key).tags or {}
        found[key.to_user_string()] = {
            name.split("/", 2)[2]: (int(value), tags[f"dagster/input_data_version/{name.split('/', 2)[2]}"])
            for name, value in tags.items()
            if name.startswith("dagster/input_event_pointer/")
        }
    return found


def _latest(instance: DagsterInstance, key: str) -> tuple[int, str]:
    record = instance.get_asset_records([dg.AssetKey(key)])[0].asset_entry.last_materialization_record
    return record.storage_id, record.event_log_entry.tags["dagster/data_version"]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("storage_kind", ["sqlite", "postgres"])
def test_upstream_data_versions_come_from_the_runs_own_materializations(storage_kind, tmp_path, monkeypatch, request):
    """A step's input provenance (event pointer and data version of each upstream) is what the
    event log holds, whether the upstream was materialized in this run (answered from the run's
    record, no asset-record read) or before it (read from the event log, as Dagster does)."""
    home = _instance_home_of(storage_kind, tmp_path, request)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    read: list[str] = []
    original = DagsterInstance.get_asset_records

    def counting(self, asset_keys=None):
        read.extend(key.to_user_string() for key in asset_keys or [])
        return original(self, asset_keys)

    monkeypatch.setattr(DagsterInstance, "get_asset_records", counting)
    with DagsterInstance.get() as instance:
        result = dg.execute_job(dg.reconstructable(get_chain_job), instance)
        assert result.success
        assert read == []  # every upstream of every step was materialized by this run
        pointers = _input_pointers(instance)
        assert pointers == {
            "middle_b": {"upstream_a": _latest(instance, "upstream_a")},
            "last_c": {"upstream_a": _latest(instance, "upstream_a"), "middle_b": _latest(instance, "middle_b")},
        }
        assert pointers["middle_b"]["upstream_a"][1] == "a-1"

        # A run of the last asset alone: its upstreams come from the event log, as in Dagster.
        read.clear()
        only_c = dg.execute_job(dg.reconstructable(get_chain_job), instance, asset_selection=[dg.AssetKey("last_c")])
        assert only_c.success
        assert sorted(read) == ["middle_b", "upstream_a"]
        assert _input_pointers(instance)["last_c"] == {
            "upstream_a": _latest(instance, "upstream_a"),
            "middle_b": _latest(instance, "middle_b"),
        }
