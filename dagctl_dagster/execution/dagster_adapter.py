"""The only place that touches Dagster's private execution API.

The claim-aware executor needs what Dagster's in-process executor uses internally:
the plan's active-execution state machine, per-step event sequences, hooks, compute log
capture. They are private (``dagster._core``), so they are imported here only, and
:data:`TESTED_DAGSTER` names the versions whose behaviour
``tests/test_dagster_adapter.py`` pins down. Upgrading Dagster means re-running that
test and adjusting this file, nothing else.
"""

from __future__ import annotations

import collections
import functools
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster._core.errors import DagsterExecutionInterruptedError, HookExecutionError, user_code_error_boundary
from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.execution.api import ExecuteRunWithPlanIterable
from dagster._core.execution.compute_logs import create_compute_log_file_key
from dagster._core.execution.context.system import (
    PlanExecutionContext,
    PlanOrchestrationContext,
    StepExecutionContext,
)
from dagster._core.execution.context_creation_job import PlanExecutionContextManager
from dagster._core.execution.plan.active import ActiveExecution
from dagster._core.execution.plan.execute_plan import dagster_event_sequence_for_step
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.plan.step import ExecutionStep
from dagster._core.execution.retries import RetryMode, get_retries_config
from dagster._core.executor.base import Executor
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._utils.error import SerializableErrorInfo, serializable_error_info_from_exc_info
from packaging.specifiers import SpecifierSet

from dagctl_dagster.secrets import redact, redact_value

if TYPE_CHECKING:
    from dagctl_dagster.execution.framework import OpContext

# The Dagster versions this adapter is pinned on (tests/test_dagster_adapter.py), as pyproject.toml declares them.
TESTED_DAGSTER = ">=1.13.5,<1.14"

if dg.__version__ not in SpecifierSet(TESTED_DAGSTER):  # pragma: no cover
    warnings.warn(
        f"dagctl-dagster's executor adapter was tested with Dagster {TESTED_DAGSTER}; "
        f"this is Dagster {dg.__version__}. Run tests/test_dagster_adapter.py before relying on it.",
        stacklevel=1,
    )

__all__ = [
    "ActiveExecution",
    "DagsterEvent",
    "DagsterExecutionInterruptedError",
    "ExecutionPlan",
    "ExecutionStep",
    "Executor",
    "PlanExecutionContext",
    "PlanOrchestrationContext",
    "RetryMode",
    "StepExecutionContext",
    "asset_keys_of_step",
    "captured_compute_logs",
    "engine_event",
    "get_retries_config",
    "hook_events",
    "resource_instances",
    "run_with_execution_context",
    "started_plan",
    "step_events",
    "step_skipped",
    "step_failed",
    "PlanRun",
    "step_key_of",
    "run_and_step_of_op",
    "step_tags",
    "event_log_schema_remembered",
    "keep_sqlite_event_connections_open",
    "pool_postgres_event_connections_while_creating_runs",
    "latest_check_results",
    "storage_connections_held_open",
    "CheckVerdict",
    "verdicts_on_latest_materialization",
]


def run_with_execution_context(
    plan_context: PlanOrchestrationContext,
    executor: Executor,
    iterator: Callable[[PlanExecutionContext, ExecutionPlan], Iterator[DagsterEvent]],
) -> Iterator[DagsterEvent]:
    """Build the run's execution context (resources initialised once) and run ``iterator``."""
    return iter(
        ExecuteRunWithPlanIterable(
            execution_plan=plan_context.execution_plan,
            iterator=iterator,
            execution_context_manager=PlanExecutionContextManager(
                job=plan_context.job,
                retry_mode=plan_context.retry_mode,
                execution_plan=plan_context.execution_plan,
                run_config=plan_context.run_config,
                dagster_run=plan_context.dagster_run,
                instance=plan_context.instance,
                raise_on_error=plan_context.raise_on_error,
                output_capture=plan_context.output_capture,
                step_dependency_config=executor.step_dependency_config,
            ),
        )
    )


@contextmanager
def started_plan(job_context: PlanExecutionContext, execution_plan: ExecutionPlan) -> Iterator[PlanRun]:
    with InstanceConcurrencyContext(job_context.instance, job_context.dagster_run) as concurrency:
        with execution_plan.start(
            retry_mode=job_context.retry_mode,
            instance_concurrency_context=concurrency,
            step_dependency_config=job_context.step_dependency_config,
        ) as active_execution:
            yield PlanRun(job_context, execution_plan, active_execution, concurrency)


class PlanRun:
    """One run's plan as it executes: Dagster's state machine of the plan (``ActiveExecution``)
    and the run's execution context, behind the questions the executor asks them."""

    def __init__(
        self,
        job_context: PlanExecutionContext,
        execution_plan: ExecutionPlan,
        active: ActiveExecution,
        concurrency: InstanceConcurrencyContext,
    ) -> None:
        self.job_context = job_context
        self._plan = execution_plan
        self._active = active
        self._concurrency = concurrency

    @property
    def run_id(self) -> str:
        return self.job_context.run_id

    @property
    def instance(self) -> dg.DagsterInstance:
        return self.job_context.instance

    @property
    def log(self) -> dg.DagsterLogManager:
        return self.job_context.log

    @property
    def is_complete(self) -> bool:
        return self._active.is_complete

    def steps_in_order(self) -> list[ExecutionStep]:
        """Every step this run executes, upstream first."""
        return list(self._plan.get_steps_to_execute_in_topo_order())

    def models_of(self, step: ExecutionStep) -> list[str]:
        """The models (asset keys as ``a/b``) the step materializes in this run."""
        return [key.to_user_string() for key in asset_keys_of_step(self.job_context, step)]

    def interrupt_requested(self) -> bool:
        return self._active.check_for_interrupts()

    def mark_interrupted(self) -> None:
        self._active.mark_interrupted()

    def ready_steps(self, limit: int | None = None) -> list[ExecutionStep]:
        """Steps whose upstream is done, each handed out once, at most ``limit``. A step in a
        concurrency pool is handed out only once it holds one of the pool's slots."""
        if limit is not None and limit <= 0:
            return []
        return list(self._active.get_steps_to_execute(limit))

    def pools(self) -> dict[str, list[ExecutionStep]]:
        """Pool name → this run's steps in it (Dagster's ``pool`` of their op)."""
        found: dict[str, list[ExecutionStep]] = {}
        for step in self._plan.get_steps_to_execute_in_topo_order():
            if step.pool:
                found.setdefault(step.pool, []).append(step)
        return found

    def step_context(self, step: ExecutionStep) -> StepExecutionContext:
        return self.job_context.for_step(step, self._active.get_known_state())

    def mark_skipped(self, step_key: str) -> None:
        """A step settled without running; its pool slot, if it holds one, is free at once."""
        self._active.mark_skipped(step_key)
        self._concurrency.free_step(step_key)

    def handle_event(self, event: DagsterEvent) -> None:
        self._active.handle_event(event)

    def verify_complete(self, step_key: str) -> None:
        self._active.verify_complete(self.job_context, step_key)

    def plan_events(self) -> Iterator[DagsterEvent]:
        """Skips of steps whose inputs can no longer arrive, as Dagster decides them."""
        return self._active.plan_events_iterator(self.job_context)

    def concurrency_events(self) -> Iterator[DagsterEvent]:
        return self._active.concurrency_event_iterator(self.job_context)

    def sleep_til_ready(self) -> None:
        self._active.sleep_til_ready()

    def abandoned_step_keys(self) -> set[str]:
        """Steps not executed because an upstream step failed (Dagster calls them abandoned)."""
        return set(self._active._abandoned)

    def failed_step_keys(self) -> set[str]:
        return set(self._active._failed)

    def upstream_step_keys(self, step_key: str) -> set[str]:
        step = self._plan.get_step_by_key(step_key)
        if isinstance(step, ExecutionStep):
            return set(step.get_execution_dependency_keys())
        return set(self._plan.get_all_step_deps()[step_key])

    def mark_unyielded_outputs_produced(self, step_key: str) -> None:
        """A successful step's outputs it did not yield still let its downstream run.

        A model with nothing due yields no materialization; its downstream models decide from
        their own due intervals, so Dagster must not skip them for the missing output.
        """
        from dagster._core.execution.plan.outputs import StepOutputHandle

        step = self._active.get_step_by_key(step_key)
        for output in step.step_outputs:
            self._active.mark_step_produced_output(StepOutputHandle(step_key, output.name))


def step_key_of(step_context: StepExecutionContext) -> str:
    return step_context.step.key


def run_and_step_of_op(context: OpContext) -> tuple[str, str]:
    """The run id and step key an op, asset or check body runs in (what hooks call
    ``run_id`` and ``step_key``)."""
    step_context = context.get_step_execution_context()
    return step_context.run_id, step_context.step.key


def step_tags(step: ExecutionStep) -> Mapping[str, str]:
    return step.tags


@contextmanager
def captured_compute_logs(job_context: PlanExecutionContext, step_keys: Sequence[str]) -> Iterator[list[DagsterEvent]]:
    """Process-wide stdout/stderr capture for the run, as the in-process executor does.

    Yields the events to emit (the capture announcement, or an engine event on failure).
    """
    compute_log_manager = job_context.instance.compute_log_manager
    events: list[DagsterEvent] = []
    with ExitStack() as stack:
        try:
            log_key = compute_log_manager.build_log_key_for_run(job_context.run_id, create_compute_log_file_key())
            log_context = stack.enter_context(compute_log_manager.capture_logs(log_key))
            events.append(DagsterEvent.capture_logs(job_context, list(step_keys), log_key, log_context))
        except Exception:
            events.append(engine_event(job_context, "Exception while setting up compute log capture", error=True))
        yield events


def step_events(step_context: StepExecutionContext) -> Iterator[DagsterEvent]:
    """The step's event sequence; each event is written to the event log as it is created.

    Upstream assets this run materialized give the step their data versions from the run's
    own record of those materializations (:func:`storage_connections_held_open`), not
    from an event-log read.
    """
    _inputs_from_this_run(step_context)
    return dagster_event_sequence_for_step(step_context)


_RUN_MATERIALIZATIONS_ATTR = "_dagctl_run_materializations"


def _inputs_from_this_run(step_context: StepExecutionContext) -> None:
    """Dagster reads the latest materialization of every upstream asset of a step from the
    event log (``DataVersionCache._fetch_input_asset_version_info``: an asset-record query and
    a deserialised event per upstream) for the step's provenance tags. For an upstream this
    run materialized, the answer is the materialization the run wrote itself; the step gets
    it from the run's record, built exactly as Dagster builds it from the read. Partitioned
    inputs, and upstreams the run did not materialize, are read as before."""
    from dagster._core.definitions.data_version import extract_data_version_from_entry
    from dagster._core.execution.context.data_version_cache import InputAssetVersionInfo

    materialized = vars(step_context.instance.event_log_storage).get(_RUN_MATERIALIZATIONS_ATTR)
    cache = step_context._data_version_cache
    if not materialized or not hasattr(cache, "_check_input_asset_event"):  # older Dagster: read as before
        return
    read = cache._fetch_input_asset_version_info
    asset_layer = step_context.job_def.asset_layer
    run_id = step_context.run_id

    def fetch_input_asset_version_info(asset_keys: Sequence[dg.AssetKey]) -> None:
        unread: list[dg.AssetKey] = []
        for key in asset_keys:
            record = materialized.get(key)
            input_name = asset_layer.get_node_input_name(step_context.node_handle, key)
            if (
                record is None
                or record.run_id != run_id
                or (input_name and step_context.has_asset_partitions_for_input(input_name))
            ):
                unread.append(key)
                continue
            cache._check_input_asset_event(key, record)
            cache.input_asset_version_info[key] = InputAssetVersionInfo(
                record.storage_id,
                record.event_log_entry.get_dagster_event().event_type,
                extract_data_version_from_entry(record.event_log_entry),
                record.run_id,
                record.timestamp,
            )
        if unread:
            read(unread)

    vars(cache)["_fetch_input_asset_version_info"] = fetch_input_asset_version_info


@contextmanager
def _materializations_recorded(storage: Any) -> Iterator[None]:
    """While the block runs, the storage keeps the latest materialization it wrote of each
    unpartitioned asset, as the event-log record an asset-record read returns
    (``EventLogRecord(storage_id, entry)``), for :func:`_inputs_from_this_run`. Both Dagster SQL
    storages write every asset event's index row through ``_store_asset_event(conn, event,
    event_id)``, inside the transaction of the event itself."""
    from dagster._core.storage.event_log.base import EventLogRecord
    from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage

    if (
        not isinstance(storage, SqlEventLogStorage)
        or _RUN_MATERIALIZATIONS_ATTR in vars(storage)
        or not hasattr(storage, "_store_asset_event")  # older Dagster of TESTED_DAGSTER writes it otherwise
    ):
        yield
        return
    materialized: dict[dg.AssetKey, EventLogRecord] = {}
    store_asset_event = storage._store_asset_event

    def record(conn: Any, event: Any, event_id: int) -> None:
        store_asset_event(conn, event, event_id)
        dagster_event = event.dagster_event
        if dagster_event is not None and dagster_event.is_step_materialization and dagster_event.partition is None:
            materialized[dagster_event.asset_key] = EventLogRecord(storage_id=event_id, event_log_entry=event)

    vars(storage).update({"_store_asset_event": record, _RUN_MATERIALIZATIONS_ATTR: materialized})
    try:
        yield
    finally:
        vars(storage).pop("_store_asset_event", None)
        vars(storage).pop(_RUN_MATERIALIZATIONS_ATTR, None)


def hook_events(
    step_context: StepExecutionContext,
    step_event_list: Sequence[DagsterEvent],
    acts_only_on_failure: Callable[[str], bool],
) -> Iterator[DagsterEvent]:
    """Run the step's hooks as Dagster's ``_trigger_hook`` does, minus its HOOK_SKIPPED events.

    Dagster writes a HOOK_SKIPPED event for every hook whose condition did not hold: with
    the Slack failure hook on every ``<project>_run`` job, one more event-log write per
    successful model, which nobody reads. Hooks that run still report HOOK_COMPLETED,
    and hooks that raise report HOOK_ERRORED without failing the run. A hook named by
    ``acts_only_on_failure`` is not even prepared (its context, its resources) for a step
    without a failure event: it would skip itself.
    """
    hook_defs = step_context.job_def.get_all_hooks_for_handle(step_context.node_handle)
    if not hook_defs:
        return
    failed = any(event.is_step_failure for event in step_event_list)
    op_label = step_context.describe_op()
    for hook_def in hook_defs:
        if not failed and acts_only_on_failure(hook_def.name):
            continue
        hook_context = step_context.for_hook(hook_def)
        try:
            with user_code_error_boundary(
                HookExecutionError,
                lambda: f"Error occurred during the execution of hook_fn triggered for {op_label}",
                log_manager=hook_context.log,
            ):
                result = hook_def.hook_fn(hook_context, step_event_list)
        except HookExecutionError as hook_error:
            yield DagsterEvent.hook_errored(step_context, hook_error)
            continue
        if result is not None and result.is_skipped:
            continue
        yield DagsterEvent.hook_completed(step_context, hook_def)


@contextmanager
def storage_connections_held_open(instance: dg.DagsterInstance, *, max_connections: int) -> Iterator[None]:
    """Keep the instance's database connections open while the run executes.

    Outside the webserver, Dagster's storages connect per call: SQLite event log storage
    builds a new engine for every event it writes and every asset-record read, and
    PostgreSQL storages open a new server connection per query. A run writes about five
    events per model, so that was most of Dagster's per-model cost (benchmarks/RESULTS.md,
    issue 4).

    PostgreSQL (and other SQL) storages get the pooled engines the webserver uses
    (``optimize_for_webserver``, no statement timeout); they stay for the life of the run
    worker process. SQLite event log storages keep their connections open process-wide
    (:func:`keep_sqlite_event_connections_open`).
    """
    event_storage = instance.event_log_storage
    if "sqlite" in type(event_storage).__module__:
        keep_sqlite_event_connections_open(force=True)
    else:
        instance.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=max_connections)
    with event_log_schema_remembered(event_storage), _materializations_recorded(event_storage):
        yield


_SCHEMA_MEMO_ATTRS = ("has_asset_key_col", "_has_asset_key_col_on_connection", "has_secondary_index", "has_table")


@contextmanager
def event_log_schema_remembered(storage: Any) -> Iterator[None]:
    """While the block runs, the event log storage answers its schema questions from memory.

    Dagster's SQL event log storages ask their database, on every call, whether the
    ``asset_keys`` table has a column (``has_asset_key_col``: a reflection of the table,
    several catalog queries on PostgreSQL), whether a data migration ran
    (``has_secondary_index``; cached by the PostgreSQL storage, not by SQLite's) and whether a
    table exists (``has_table``, a catalog query on PostgreSQL): several times for each
    upstream data-version read and for each materialization written (benchmarks/RESULTS.md,
    issue 30). A column, table or migration that exists stays while the run executes; a
    missing one is asked again. Only this storage object, only for the block.
    """
    from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage

    if not isinstance(storage, SqlEventLogStorage) or any(a in storage.__dict__ for a in _SCHEMA_MEMO_ATTRS):
        yield
        return
    columns: set[str] = set()
    indexes: set[str] = set()
    tables: set[str] = set()
    known_by_question = {
        "has_asset_key_col": columns,
        "_has_asset_key_col_on_connection": columns,  # not in every Dagster of TESTED_DAGSTER
        "has_secondary_index": indexes,
        "has_table": tables,
    }

    def remembered(known: set[str], ask: Callable[..., bool]) -> Callable[..., bool]:
        def answer(*args: Any) -> bool:
            name = args[-1]
            if name in known:
                return True
            present = ask(*args)
            if present:
                known.add(name)
            return present

        return answer

    # On the object, not its class: other storages of the process ask as before.
    vars(storage).update(
        {
            question: remembered(known, getattr(storage, question))
            for question, known in known_by_question.items()
            if hasattr(storage, question)
        }
    )
    try:
        yield
    finally:
        for attribute in _SCHEMA_MEMO_ATTRS:
            storage.__dict__.pop(attribute, None)


SQLITE_EVENT_LOG_MODULE = "dagster._core.storage.event_log.sqlite.sqlite_event_log"
KEPT_OPEN_SQLITE_SHARDS = 4  # the index shard and the last few runs' shards
_KEPT_ENGINES_ATTR = "_dagctl_kept_open_engines"
_KNOWN_TABLES_ATTR = "_dagctl_known_tables"
_kept_open_install_lock = threading.Lock()


def keep_sqlite_event_connections_open(*, force: bool = False) -> bool:
    """Make every SQLite event log storage of this process reuse one engine per database file.

    Dagster's ``SqliteEventLogStorage`` builds and disposes a SQLAlchemy engine for every
    call, and creating a run writes one ``ASSET_MATERIALIZATION_PLANNED`` event per asset,
    each in the run's and the index's database (benchmarks/RESULTS.md, issue 4). Connections
    are still used one at a time under the storage's own lock, each call still in its own
    transaction. Engines are kept for the index (always)
    and the ``KEPT_OPEN_SQLITE_SHARDS - 1`` most recently used run shards, dropped before
    ``wipe()`` deletes run files, and closed by ``dispose()``.

    Without ``force`` it only patches when Dagster's SQLite storage module is already
    imported (this process has a SQLite instance), so a code location load never imports
    SQLAlchemy for it. Idempotent; returns whether the patch is in place.
    """
    if not force and SQLITE_EVENT_LOG_MODULE not in sys.modules:
        return False
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    with _kept_open_install_lock:
        if getattr(SqliteEventLogStorage, "_dagctl_kept_open", False):
            return True
        original_wipe = SqliteEventLogStorage.wipe
        original_dispose = SqliteEventLogStorage.dispose
        original_has_table = SqliteEventLogStorage.has_table

        def wipe(self: SqliteEventLogStorage) -> None:
            with self._db_lock:
                _dispose_kept_engines(self)
                self.__dict__.pop(_KNOWN_TABLES_ATTR, None)
            original_wipe(self)

        def has_table(self: SqliteEventLogStorage, table_name: str) -> bool:
            # Dagster asks before writing each materialization's tags, on a new engine and
            # connection every time; a table that exists stays until wipe().
            known = self.__dict__.setdefault(_KNOWN_TABLES_ATTR, set())
            if table_name in known:
                return True
            present = original_has_table(self, table_name)
            if present:
                known.add(table_name)
            return present

        def dispose(self: SqliteEventLogStorage) -> None:
            try:
                original_dispose(self)
            finally:
                with self._db_lock:
                    _dispose_kept_engines(self)

        SqliteEventLogStorage._connect = _kept_open_sqlite_connect  # type: ignore[method-assign,assignment]
        SqliteEventLogStorage.wipe = wipe  # type: ignore[method-assign]
        SqliteEventLogStorage.has_table = has_table  # type: ignore[method-assign]
        SqliteEventLogStorage.dispose = dispose  # type: ignore[method-assign]
        SqliteEventLogStorage._dagctl_kept_open = True  # type: ignore[attr-defined]
    return True


@contextmanager
def _kept_open_sqlite_connect(storage: Any, shard: str) -> Iterator[Any]:
    with storage._db_lock:
        engines = storage.__dict__.setdefault(_KEPT_ENGINES_ATTR, collections.OrderedDict())
        engine = engines.get(shard)
        if engine is None:
            engine = _new_kept_engine(storage, shard)
            engines[shard] = engine
            _evict_least_recent_run_shards(engines)
        else:
            engines.move_to_end(shard)
        with engine.connect() as connection, connection.begin():
            yield connection


def _evict_least_recent_run_shards(engines: Any) -> None:
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME

    while len(engines) > KEPT_OPEN_SQLITE_SHARDS:
        oldest_run_shard = next(shard for shard in engines if shard != INDEX_SHARD_NAME)
        engines.pop(oldest_run_shard).dispose()


def _new_kept_engine(storage: Any, shard: str) -> Any:
    import sqlalchemy as sa
    from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS

    url = storage.conn_string_for_shard(shard)
    connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False}
    if shard not in storage._initialized_dbs:
        # Creating the schema opens nested connections: not on the one-connection pool.
        init_engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args=connect_args)
        storage._initdb(init_engine)
        init_engine.dispose()
        storage._initialized_dbs.add(shard)
    # No reset on return: every use is inside ``connection.begin()``, which already ended its
    # transaction, so the pool's own ROLLBACK per checkin would be one more SQLite call per use.
    engine = sa.create_engine(
        url,
        poolclass=sa.pool.QueuePool,
        pool_size=1,
        max_overflow=0,
        pool_reset_on_return=None,
        connect_args=connect_args,
    )
    sa.event.listen(engine, "connect", _sync_wal_at_checkpoints)
    return engine


def _sync_wal_at_checkpoints(dbapi_connection: Any, _record: Any) -> None:
    # Dagster creates its SQLite event logs in WAL mode, where SQLite's default still syncs
    # the disk on every commit: five per model step. NORMAL syncs at checkpoints only, the
    # setting SQLite recommends for WAL: a power loss may forget the last events, an
    # application crash loses nothing, and the file is never corrupted.
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


def _dispose_kept_engines(storage: Any) -> None:
    for engine in storage.__dict__.pop(_KEPT_ENGINES_ATTR, {}).values():
        engine.dispose()


POSTGRES_EVENT_LOG_MODULE = "dagster_postgres.event_log.event_log"
_RUN_CREATING_METHODS = ("create_run", "create_run_for_job")
_POOLED_RUN_CREATION_ATTR = "_dagctl_pooled_run_creation"
_pooled_run_creation_install_lock = threading.Lock()


def pool_postgres_event_connections_while_creating_runs(*, force: bool = False) -> bool:
    """Make every ``DagsterInstance`` of this process create its runs on one PostgreSQL connection.

    Creating a run writes one planned event per asset (and per check), and Dagster's
    PostgreSQL event log storage opens two new server connections for each
    (benchmarks/RESULTS.md, issue 30): over a thousand for a 500-model job, in the process
    that creates the run (``dagster job execute``, ``dagster asset materialize``). While an
    instance creates a run, its event log storage borrows the pooled engine the webserver
    uses (:func:`_event_connections_pooled`); the connection is closed when the run exists,
    so no process holds one between runs.

    Without ``force`` it only patches when Dagster's PostgreSQL storage module is already
    imported (this process has a PostgreSQL instance), as
    :func:`keep_sqlite_event_connections_open`. Idempotent; returns whether the patch is in place.
    """
    if not force and POSTGRES_EVENT_LOG_MODULE not in sys.modules:
        return False
    with _pooled_run_creation_install_lock:
        if getattr(dg.DagsterInstance, _POOLED_RUN_CREATION_ATTR, False):
            return True
        for name in _RUN_CREATING_METHODS:
            setattr(dg.DagsterInstance, name, _creating_on_pooled_connections(getattr(dg.DagsterInstance, name)))
        setattr(dg.DagsterInstance, _POOLED_RUN_CREATION_ATTR, True)
    return True


def _creating_on_pooled_connections(create: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(create)
    def creating(self: dg.DagsterInstance, *args: Any, **kwargs: Any) -> Any:
        with _event_connections_pooled(self.event_log_storage):
            return create(self, *args, **kwargs)

    return creating


@contextmanager
def _event_connections_pooled(storage: Any) -> Iterator[None]:
    """While the block runs, a PostgreSQL event log storage that connects per call reuses one
    connection (the webserver's pooled engine, no statement timeout); afterwards it connects
    per call again and the pooled connection is closed. Any other storage: unchanged."""
    from sqlalchemy.pool import NullPool

    module = sys.modules.get(POSTGRES_EVENT_LOG_MODULE)
    if module is None or not isinstance(storage, module.PostgresEventLogStorage):
        yield
        return
    per_call_engine = storage._engine
    if not isinstance(per_call_engine.pool, NullPool):  # already pooled: a run worker, the webserver
        yield
        return
    storage.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=-1)
    pooled_engine = storage._engine
    try:
        yield
    finally:
        storage._engine = per_call_engine
        pooled_engine.dispose()


def step_skipped(step_context: StepExecutionContext, message: str) -> list[DagsterEvent]:
    """The reason (an engine event on the step, shown in its logs) and the skip itself."""
    return [engine_event(step_context, message), DagsterEvent.step_skipped_event(step_context)]


def engine_event(
    context: PlanExecutionContext | PlanOrchestrationContext | StepExecutionContext,
    message: str,
    metadata: dict[str, Any] | None = None,
    *,
    error: bool = False,
) -> DagsterEvent:
    """An engine event on the run, or on a step when given a step context; secrets masked."""
    data = EngineEventData(
        metadata=redact_value(metadata or {}),
        error=redacted_error_info(serializable_error_info_from_exc_info(sys.exc_info())) if error else None,
    )
    return DagsterEvent.engine_event(context, redact(message), event_specific_data=data)


def redacted_error_info(info: SerializableErrorInfo | None) -> SerializableErrorInfo | None:
    """The error (its stack, causes and context too) with secret values masked."""
    if info is None:
        return None
    return SerializableErrorInfo(
        message=redact(info.message),
        stack=[redact(line) for line in info.stack],
        cls_name=info.cls_name,
        cause=redacted_error_info(info.cause),
        context=redacted_error_info(info.context),
    )


def asset_keys_of_step(job_context: PlanExecutionContext, step: ExecutionStep) -> list[dg.AssetKey]:
    """The asset keys a step materializes in this run (its selected keys)."""
    asset_layer = job_context.job_def.asset_layer
    keys = asset_layer.get_selected_entity_keys_for_node(step.node_handle)
    selected = job_context.dagster_run.asset_selection
    return sorted(
        (k for k in keys if isinstance(k, dg.AssetKey) and (selected is None or k in selected)),
        key=lambda k: k.to_user_string(),
    )


def resource_instances(job_context: PlanExecutionContext) -> list[Any]:
    """The run's initialised resource objects (the executor asks them questions)."""
    return list(job_context.scoped_resources_builder.resource_instance_dict.values())


def step_failed(step_context: StepExecutionContext, message: str, metadata: dict[str, Any]) -> list[DagsterEvent]:
    """A step that did not run, failed with a reason (no traceback): the run is not green."""
    from dagster._core.execution.plan.objects import StepFailureData, UserFailureData
    from dagster._utils.error import SerializableErrorInfo

    data = StepFailureData(
        error=SerializableErrorInfo(message=message, stack=[], cls_name=None),
        user_failure_data=UserFailureData(label="dagctl", description=message, metadata=metadata),
    )
    return [DagsterEvent.step_failure_event(step_context, data)]


def run_worker_failed(health: CheckRunHealthResult) -> bool:
    """A run launcher's health check found the run's worker failed (gone, not resumable as is)."""
    return health.status == WorkerStatus.FAILED


def pool_limit(instance: dg.DagsterInstance, pool: str) -> int | None:
    """The pool's limit in the instance (None: no limit set, or storage without pools)."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return None
    return next((p.limit for p in storage.get_pool_limits() if p.name == pool), None)


def set_pool_limit(instance: dg.DagsterInstance, pool: str, limit: int) -> bool:
    """Sets the pool's limit as ``dagster instance concurrency set`` does; False when the
    instance's storage has no concurrency pools."""
    from sqlalchemy.exc import IntegrityError

    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return False
    try:
        storage.set_concurrency_slots(pool, limit)
    except IntegrityError:  # another run created the pool at the same moment: set it on the row it made
        storage.set_concurrency_slots(pool, limit)
    return True


def latest_check_results(
    instance: dg.DagsterInstance, check_keys: Sequence[dg.AssetCheckKey]
) -> dict[dg.AssetCheckKey, bool]:
    """Whether each check's latest recorded evaluation passed (what the asset page shows), in
    one read; checks never evaluated, or whose latest execution has no result yet, are absent."""
    records = instance.event_log_storage.get_latest_asset_check_execution_by_key(list(check_keys))
    found: dict[dg.AssetCheckKey, bool] = {}
    for key, record in records.items():
        event = record.event.dagster_event if record.event is not None else None
        if event is not None and event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            found[key] = event.asset_check_evaluation_data.passed
    return found


@dataclass(frozen=True)
class CheckVerdict:
    """An asset check's last evaluated result (passed or failed), and the run that evaluated it."""

    passed: bool
    severity: dg.AssetCheckSeverity
    metadata: Mapping[str, Any]
    run_id: str


def verdicts_on_latest_materialization(
    instance: dg.DagsterInstance, check_keys: Sequence[dg.AssetCheckKey]
) -> dict[dg.AssetCheckKey, CheckVerdict]:
    """Each check's last evaluated result, for the checks whose last evaluation was of their
    asset's latest materialization (the data as it still is; for an asset never materialized,
    an evaluation of none). A check never evaluated, or evaluated before a newer
    materialization, has none."""
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

    evaluated = {AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED}
    latest_storage_ids: dict[dg.AssetKey, int | None] = {}
    verdicts: dict[dg.AssetCheckKey, CheckVerdict] = {}
    for key in check_keys:
        if key.asset_key not in latest_storage_ids:
            records = instance.fetch_materializations(key.asset_key, limit=1).records
            latest_storage_ids[key.asset_key] = records[0].storage_id if records else None
        history = instance.event_log_storage.get_asset_check_execution_history(key, limit=1, status=evaluated)
        event = history[0].event if history else None
        evaluation = event.dagster_event.asset_check_evaluation_data if event and event.dagster_event else None
        if evaluation is None:
            continue
        target = evaluation.target_materialization_data
        # An external asset is never materialized: its checks' target is None, as is its latest.
        if (target.storage_id if target else None) != latest_storage_ids[key.asset_key]:
            continue
        verdicts[key] = CheckVerdict(
            passed=evaluation.passed,
            severity=evaluation.severity,
            metadata=dict(evaluation.metadata),
            run_id=history[0].run_id,
        )
    return verdicts
