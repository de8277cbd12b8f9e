"""The one module that touches SQLMesh's internals (scheduler steps, private attributes).

A run of this product must do what ``sqlmesh run`` does, model by model, so it follows
``Context.run`` → ``Scheduler._run_or_audit`` → ``Scheduler.run_merged_intervals`` of the
pinned SQLMesh: the same due intervals (auto-restatements and signals included), the same
scheduling units (``CreateNode``/``EvaluateNode`` per batch) and the same calls per unit.
Only the order in which units start differs: the claim-aware executor starts them, one
Dagster step per model. ``tests/test_sqlmesh_internals.py`` pins every name used here to
the tested SQLMesh minor version.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TESTED_SQLMESH_MINOR = "0.236"
SQLMESH_VERSIONS = ">=0.236,<0.237"  # what pyproject.toml declares; tests/test_sqlmesh_internals.py

# Connection paths DuckDB treats as something other than a file relative to the process.
_NOT_A_RELATIVE_FILE = (":memory:", "md:", "motherduck:")
_FILE_ATTACH_TYPES = {"duckdb", "sqlite"}


def installed_sqlmesh_minor() -> str:
    from sqlmesh import __version__

    return ".".join(__version__.split(".")[:2])


# -- configs as `sqlmesh` resolves them --------------------------------------------------


def load_project_configs(paths: Sequence[Path], working_dir: Path) -> dict[Path, Any]:
    """SQLMesh's configs for ``paths``, with relative DuckDB files resolved against ``working_dir``.

    ``sqlmesh`` opens ``database: db.duckdb`` relative to the directory it runs in; a run
    worker runs wherever Dagster (or a pod's image) started it, so the paths are made
    absolute as if SQLMesh ran in ``working_dir``.
    """
    from sqlmesh.core.config import Config
    from sqlmesh.core.config.loader import load_configs

    from dagctl_dagster.sqlmesh.imports import own_modules

    with own_modules(paths):  # a config.py may import the project's own modules
        configs = load_configs("config", Config, list(paths))
    return {path: _with_absolute_paths(config, working_dir) for path, config in configs.items()}


def sqlmesh_project_name(config: Any) -> str:
    """The config's multi-repository ``project:`` name ('' when it names none)."""
    return config.project or ""


def concurrent_tasks(context: Any) -> int:
    """How many tasks SQLMesh runs at once on the context's gateway (``sqlmesh run``'s workers)."""
    return max(1, int(context.concurrent_tasks))


def shares_one_cursor(context: Any) -> bool:
    """True when every thread would use one DB-API cursor (SQLMesh's single-task pool)."""
    from sqlmesh.utils.connection_pool import SingletonConnectionPool

    adapters = context.snapshot_evaluator.adapters.values()
    return any(isinstance(a._connection_pool, SingletonConnectionPool) for a in adapters)


def _with_absolute_paths(config: Any, working_dir: Path) -> Any:
    update: dict[str, Any] = {}
    if isinstance(config.gateways, dict):
        update["gateways"] = {name: _gateway_with_absolute_paths(g, working_dir) for name, g in config.gateways.items()}
    if config.default_connection is not None:
        update["default_connection"] = _connection_with_absolute_paths(config.default_connection, working_dir)
    if getattr(config, "default_test_connection_", None) is not None:
        update["default_test_connection_"] = _connection_with_absolute_paths(
            config.default_test_connection_, working_dir
        )
    return config.model_copy(update=update) if update else config


def _gateway_with_absolute_paths(gateway: Any, working_dir: Path) -> Any:
    update = {
        name: _connection_with_absolute_paths(getattr(gateway, name), working_dir)
        for name in ("connection", "state_connection", "test_connection")
        if getattr(gateway, name, None) is not None
    }
    return gateway.model_copy(update=update)


def _connection_with_absolute_paths(connection: Any, working_dir: Path) -> Any:
    from sqlmesh.core.config.connection import DuckDBConnectionConfig

    if not isinstance(connection, DuckDBConnectionConfig):
        return connection
    update: dict[str, Any] = {}
    if connection.database:
        update["database"] = _absolute(connection.database, working_dir)
    if connection.catalogs:
        update["catalogs"] = {
            name: _attach_with_absolute_path(value, working_dir) for name, value in connection.catalogs.items()
        }
    return connection.model_copy(update=update) if update else connection


def _attach_with_absolute_path(value: Any, working_dir: Path) -> Any:
    if isinstance(value, str):
        return _absolute(value, working_dir)
    if getattr(value, "type", None) in _FILE_ATTACH_TYPES:
        return value.model_copy(update={"path": _absolute(value.path, working_dir)})
    return value


def _absolute(path: str, working_dir: Path) -> str:
    if not path or path.startswith(_NOT_A_RELATIVE_FILE) or "://" in path or os.path.isabs(path):
        return path
    return os.path.normpath(working_dir / path)


# -- the environment a run executes ------------------------------------------------------


@dataclass(frozen=True)
class EnvironmentState:
    """What state says of an environment: absent, being updated, or finalized at a plan."""

    exists: bool
    plan_id: str | None = None
    finalized: bool = False


def environment_state(context: Any, environment: str) -> EnvironmentState:
    """One read of the environment's summary (not its snapshots)."""
    for summary in context.state_sync.get_environments_summary():
        if summary.name == environment:
            return EnvironmentState(exists=True, plan_id=summary.plan_id, finalized=bool(summary.finalized_ts))
    return EnvironmentState(exists=False)


def wait_for_finalized(context: Any, environment: str, *, should_stop: Callable[[], bool]) -> EnvironmentState:
    """Waits, as ``sqlmesh run`` does, while another plan is updating the environment.

    Returns the environment's state once it is finalized or absent; raises ``SQLMeshError``
    after the project's ``run.environment_check_max_wait``.
    """
    from sqlmesh.utils.errors import SQLMeshError

    run_config = context.config.run
    attempts = max(1, run_config.environment_check_max_wait // max(1, run_config.environment_check_interval))
    for _ in range(attempts):
        state = environment_state(context, environment)
        if not state.exists or state.finalized:
            return state
        deadline = time.monotonic() + run_config.environment_check_interval
        while time.monotonic() < deadline:
            if should_stop():
                return state
            time.sleep(0.2)
    raise SQLMeshError(
        f"Environment '{environment}' is still being updated by another plan after "
        f"{run_config.environment_check_max_wait}s (the project's run.environment_check_max_wait)."
    )


# -- unit tests and the first plan -------------------------------------------------------


@dataclass(frozen=True)
class FailedTest:
    name: str
    reason: str


def run_unit_tests(context: Any) -> list[FailedTest]:
    """The project's SQLMesh unit tests, run as ``sqlmesh plan`` runs them; the failures."""
    import io

    result = context.test(stream=io.StringIO())
    failed: list[FailedTest] = []
    for test, trace in [*result.failures, *result.errors]:
        reason = (str(trace).strip().splitlines() or [""])[-1]
        failed.append(FailedTest(name=_test_name(test), reason=reason))
    return failed


def _test_name(test: Any) -> str:
    path = getattr(test, "path", None)
    name = getattr(test, "test_name", None) or str(test)
    return f"{name} ({Path(path).name})" if path else name


def apply_plan(context: Any, environment: str, *, circuit_breaker: Callable[[], bool]) -> None:
    """``sqlmesh plan <environment> --auto-apply`` after its unit tests have passed."""
    builder = context.plan_builder(environment, skip_tests=True)
    plan = builder.build()
    context.apply(plan, circuit_breaker=circuit_breaker)


def load_custom_materializations(context: Any) -> None:
    """What ``Context.run`` does before scheduling: register the project's materializations."""
    context._load_materializations()


def custom_materializations() -> list[tuple[str, type]]:
    """Each custom materialization class the process holds, with the name models give it:
    SQLMesh's ``get_custom_materialization_type`` looks among these classes."""
    from sqlmesh import CustomMaterialization

    return [
        (getattr(strategy_type, "NAME", strategy_type.__name__).lower(), strategy_type)
        for strategy_type in CustomMaterialization.__subclasses__()
    ]


# -- the due work of one run -------------------------------------------------------------


@dataclass
class ScheduledRun:
    """The scheduling units ``sqlmesh run`` would execute now, grouped by snapshot name."""

    scheduler: Any
    naming_info: Any
    deployability_index: Any
    execution_time: int
    plan_id: str
    batches: dict[str, list[tuple[int, int]]]
    units: dict[str, list[Any]]
    snapshots_to_create: set[Any]
    environment_statements: list[Any]
    selected_models: set[str]
    runs_environment_statements: bool
    auto_restatement_triggers: dict[Any, list[Any]] = field(default_factory=dict)

    @property
    def snapshots_by_name(self) -> dict[str, Any]:
        return self.scheduler.snapshots_by_name

    def snapshot(self, name: str) -> Any | None:
        return self.scheduler.snapshots_by_name.get(name)


def schedule_run(context: Any, environment: str, plan_id: str) -> ScheduledRun:
    """Everything ``Scheduler.run`` computes before it starts executing units."""
    from sqlmesh.core import constants as c
    from sqlmesh.core.snapshot import DeployabilityIndex, apply_auto_restatements, snapshots_to_dag
    from sqlmesh.utils.date import now_timestamp

    scheduler = context.scheduler(environment=environment)
    state = context.state_sync
    naming_info = state.get_environment(environment).naming_info
    snapshots = list(scheduler.snapshots.values())
    is_prod = environment.lower() == c.PROD
    deployability_index = DeployabilityIndex.all_deployable() if is_prod else DeployabilityIndex.create(snapshots)
    execution_time = now_timestamp()
    state.refresh_snapshot_intervals(snapshots)
    triggers: dict[Any, list[Any]] = {}
    if is_prod:
        restated, triggers = apply_auto_restatements(scheduler.snapshots, execution_time)
        state.add_snapshots_intervals(restated)
        state.update_auto_restatements({s.name_version: s.next_auto_restatement_ts for s in snapshots})
    merged = scheduler.merged_missing_intervals(execution_time=execution_time, deployability_index=deployability_index)
    selected = list(merged)
    snapshot_dag = snapshots_to_dag(snapshots).subdag(*{s.snapshot_id for s in selected})
    batched = scheduler.batch_intervals(merged, deployability_index, naming_info, dag=snapshot_dag)
    candidates = [s for s in selected if not deployability_index.is_representative(s) or s in batched]
    to_create = {
        s.snapshot_id for s in scheduler.snapshot_evaluator.get_snapshots_to_create(candidates, deployability_index)
    }
    # `_dag` removes from `to_create` the snapshots it gives a separate CreateNode, as
    # `run_merged_intervals` relies on when it decides `target_table_exists`.
    dag = scheduler._dag(batched, snapshot_dag=snapshot_dag, snapshots_to_create=to_create)
    units: dict[str, list[Any]] = {}
    for unit in dag.sorted:
        units.setdefault(unit.snapshot_name, []).append(unit)
    merged_ids = {s.snapshot_id for s in merged}
    return ScheduledRun(
        scheduler=scheduler,
        naming_info=naming_info,
        deployability_index=deployability_index,
        execution_time=execution_time,
        plan_id=plan_id,
        batches={s.name: list(b) for s, b in batched.items()},
        units=units,
        snapshots_to_create=to_create,
        environment_statements=state.get_environment_statements(naming_info.name),
        selected_models={s.node.dbt_unique_id for s in merged if s.node.dbt_unique_id},
        runs_environment_statements=bool(merged),
        auto_restatement_triggers={k: v for k, v in triggers.items() if k in merged_ids},
    )


def execute_environment_statements(run: ScheduledRun, stage: str) -> None:
    """``before_all`` / ``after_all`` with the arguments ``run_merged_intervals`` passes."""
    from sqlmesh.core.environment import execute_environment_statements as execute
    from sqlmesh.core.macros import RuntimeStage

    if not run.runs_environment_statements:
        return
    execute(
        adapter=run.scheduler.snapshot_evaluator.adapter,
        environment_statements=run.environment_statements,
        runtime_stage=getattr(RuntimeStage, stage),
        environment_naming_info=run.naming_info,
        default_catalog=run.scheduler.default_catalog,
        snapshots=run.scheduler.snapshots_by_name,
        start=None,
        end=None,
        execution_time=run.execution_time,
        selected_models=run.selected_models,
    )


@dataclass(frozen=True)
class UnitResult:
    """What one scheduling unit did: the interval it evaluated, its audits, rows processed."""

    interval: tuple[int, int] | None
    audit_results: list[Any]
    rows_processed: int | None
    interval_count: int = 0


def execute_unit(run: ScheduledRun, unit: Any) -> UnitResult:
    """One ``CreateNode`` / ``EvaluateNode`` exactly as ``run_merged_intervals.run_node`` does.

    Raises what SQLMesh raises (a failed blocking audit: ``NodeAuditsErrors``).
    """
    from sqlmesh.core.scheduler import CreateNode, EvaluateNode
    from sqlmesh.core.snapshot import SnapshotIdBatch

    scheduler = run.scheduler
    snapshot = scheduler.snapshots_by_name[unit.snapshot_name]
    if isinstance(unit, CreateNode):
        scheduler.snapshot_evaluator.create_snapshot(
            snapshot=snapshot,
            snapshots=scheduler.snapshots_by_name,
            deployability_index=run.deployability_index,
            allow_destructive_snapshots=set(),
            allow_additive_snapshots=set(),
        )
        return UnitResult(interval=None, audit_results=[], rows_processed=None)
    if not isinstance(unit, EvaluateNode):
        return UnitResult(interval=None, audit_results=[], rows_processed=None)
    start, end = unit.interval
    audit_results = scheduler.evaluate(
        snapshot=snapshot,
        environment_naming_info=run.naming_info,
        start=start,
        end=end,
        execution_time=run.execution_time,
        deployability_index=run.deployability_index,
        batch_index=unit.batch_index,
        allow_destructive_snapshots=None,
        allow_additive_snapshots=None,
        target_table_exists=snapshot.snapshot_id not in run.snapshots_to_create or unit.batch_index > 0,
        selected_models=run.selected_models,
    )
    stats = scheduler.snapshot_evaluator.execution_tracker.get_execution_stats(
        SnapshotIdBatch(snapshot_id=snapshot.snapshot_id, batch_id=unit.batch_index)
    )
    rows = stats.total_rows_processed if stats is not None else None
    return UnitResult(
        interval=(start, end),
        audit_results=list(audit_results),
        rows_processed=rows,
        interval_count=interval_count(snapshot, (start, end)),
    )


def interval_count(snapshot: Any, interval: tuple[int, int]) -> int:
    """How many of the node's intervals (days, hours, ...) one evaluated batch covers."""
    unit_ms = snapshot.node.interval_unit.milliseconds
    return max(1, (interval[1] - interval[0]) // unit_ms)


def physical_table(run: ScheduledRun, snapshot: Any) -> str:
    return snapshot.table_name(is_deployable=run.deployability_index.is_deployable(snapshot))


def audit_failures(exc: BaseException) -> list[Any]:
    """The failed audits a ``NodeAuditsErrors`` carries (empty for any other error)."""
    from sqlmesh.utils.errors import NodeAuditsErrors

    return list(exc.errors) if isinstance(exc, NodeAuditsErrors) else []


def is_sqlmesh_error(exc: BaseException) -> bool:
    from sqlmesh.utils.errors import SQLMeshError

    return isinstance(exc, SQLMeshError)


# -- stopping ------------------------------------------------------------------------------


def interrupt_queries(context: Any) -> int:
    """Asks every open warehouse connection of the context to cancel its running query.

    Returns how many connections were asked. Best effort: a driver without a cancel call
    is left to finish its statement.
    """
    asked = 0
    for connection in _open_connections(context):
        cancel = getattr(connection, "interrupt", None) or getattr(connection, "cancel", None)
        if callable(cancel):
            try:
                cancel()
                asked += 1
            except Exception:  # a connection closed meanwhile has nothing to cancel
                pass
    return asked


def _open_connections(context: Any) -> Iterable[Any]:
    evaluator = getattr(context, "_snapshot_evaluator", None)
    adapters = [getattr(context, "_engine_adapter", None), *(getattr(evaluator, "adapters", None) or {}).values()]
    seen: set[int] = set()
    for adapter in adapters:
        pool = getattr(adapter, "_connection_pool", None)
        if pool is None:
            continue
        candidates = [getattr(pool, "_connection", None)]
        candidates.extend((getattr(pool, "_thread_connections", None) or {}).values())
        candidates.extend((getattr(pool, "_thread_cursors", None) or {}).values())
        candidates.append(getattr(pool, "_cursor", None))
        for candidate in candidates:
            if candidate is not None and id(candidate) not in seen:
                seen.add(id(candidate))
                yield candidate


def release_thread_connections(context: Any) -> None:
    """Closes what SQLMesh opened for the calling thread (its cursor, or its own connection).

    Step threads are reused from model to model, as ``sqlmesh run`` reuses its workers; each
    closes what it opened when the run ends.
    """
    from sqlmesh.utils.connection_pool import ThreadLocalConnectionPool, ThreadLocalSharedConnectionPool

    if context is None:
        return
    evaluator = getattr(context, "_snapshot_evaluator", None)
    state_adapter = getattr(getattr(context, "_state_sync", None), "engine_adapter", None)
    pools = {
        id(pool): pool
        for adapter in [*(getattr(evaluator, "adapters", None) or {}).values(), state_adapter]
        if (pool := getattr(adapter, "_connection_pool", None)) is not None
    }
    for pool in pools.values():
        try:
            if isinstance(pool, ThreadLocalConnectionPool):
                pool.close()
            elif isinstance(pool, ThreadLocalSharedConnectionPool):
                pool.close_cursor()
        except Exception:  # nothing was open on this thread
            pass


# -- freshness: completed intervals in state ----------------------------------------------


@dataclass(frozen=True)
class ModelIntervals:
    """A model of an environment, its cron, and the end of its last completed interval in state."""

    fqn: str
    cron: str
    cron_tz: str | None
    start_ms: int | None
    last_end_ms: int | None


def completed_intervals(context: Any, environment: str) -> list[ModelIntervals]:
    """Every model of ``environment`` that has intervals (not external), as state records them.

    Empty when the environment does not exist. The caller closes the context: DuckDB state
    allows one process at a time.
    """
    env = context.state_sync.get_environment(environment)
    if env is None:
        return []
    snapshots = context.state_sync.get_snapshots(env.snapshots)
    found: list[ModelIntervals] = []
    for snapshot in snapshots.values():
        node = snapshot.node
        if getattr(snapshot, "is_external", False) or not getattr(node, "cron", None):
            continue
        intervals = snapshot.intervals or []
        tz = getattr(node, "cron_tz", None)
        start = intervals[0][0] if intervals else None
        found.append(
            ModelIntervals(
                fqn=snapshot.name,
                cron=str(node.cron),
                cron_tz=str(tz) if tz else None,
                start_ms=start,
                last_end_ms=max(end for _, end in intervals) if intervals else None,
            )
        )
    return sorted(found, key=lambda m: m.fqn)
