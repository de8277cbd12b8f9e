"""The due work of one run, computed and executed unit by unit as ``sqlmesh run`` does.

A run of this product follows ``Context.run`` → ``Scheduler._run_or_audit`` →
``Scheduler.run_merged_intervals`` of the tested SQLMesh: the same due intervals
(auto-restatements and signals included), the same scheduling units (``CreateNode`` /
``EvaluateNode`` per batch) and the same calls per unit. Only the order in which units start
differs: the claim-aware executor starts them, one Dagster step per model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dagctl_dagster.sqlmesh.internals.audits import AuditOutcome, audit_outcomes

if TYPE_CHECKING:
    from sqlmesh import Context
    from sqlmesh.core.environment import EnvironmentNamingInfo, EnvironmentStatements
    from sqlmesh.core.scheduler import Scheduler, SchedulingUnit
    from sqlmesh.core.snapshot import DeployabilityIndex, Snapshot, SnapshotId


@dataclass(frozen=True)
class SnapshotFacts:
    """What a step reports of its model's snapshot in the run's environment."""

    version: str | None
    physical_table: str | None  # None for what is not a model (a standalone audit)


@dataclass
class ScheduledRun:
    """The scheduling units ``sqlmesh run`` would execute now, grouped by snapshot name."""

    scheduler: Scheduler
    naming_info: EnvironmentNamingInfo
    deployability_index: DeployabilityIndex
    execution_time: int
    plan_id: str
    batches: dict[str, list[tuple[int, int]]]
    units: dict[str, list[SchedulingUnit]]
    snapshots_to_create: set[SnapshotId]
    environment_statements: list[EnvironmentStatements]
    selected_models: set[str]
    runs_environment_statements: bool
    auto_restatement_triggers: dict[SnapshotId, list[SnapshotId]] = field(default_factory=dict)

    @property
    def snapshot_count(self) -> int:
        return len(self.scheduler.snapshots_by_name)

    def facts(self, name: str) -> SnapshotFacts | None:
        """The snapshot of ``name`` (a model's FQN) in the environment; None when it has none."""
        snapshot = self.scheduler.snapshots_by_name.get(name)
        if snapshot is None:
            return None
        table = _physical_table(self, snapshot) if snapshot.is_model else None
        return SnapshotFacts(version=snapshot.version, physical_table=table)

    def recorded_intervals(self, name: str) -> tuple[list[tuple[int, int]], int]:
        """The intervals SQLMesh state records as done for the model ``name`` (merged ranges),
        and how many of the model's intervals (days, hours, ...) they cover."""
        snapshot = self.scheduler.snapshots_by_name.get(name)
        if snapshot is None or not snapshot.is_model:
            return [], 0
        ranges = [(int(start), int(end)) for start, end in snapshot.intervals]
        return ranges, sum(interval_count(snapshot, r) for r in ranges)

    @property
    def snapshot_names(self) -> list[str]:
        return sorted(self.scheduler.snapshots_by_name)


def schedule_run(context: Context, environment: str, plan_id: str) -> ScheduledRun:
    """Everything ``Scheduler.run`` computes before it starts executing units."""
    from sqlmesh.core import constants as c
    from sqlmesh.core.snapshot import DeployabilityIndex, apply_auto_restatements, snapshots_to_dag
    from sqlmesh.utils.date import now_timestamp

    scheduler = context.scheduler(environment=environment)
    state = context.state_sync
    stored = state.get_environment(environment)
    if stored is None:
        raise LookupError(f"environment '{environment}' is not in SQLMesh state")
    naming_info = stored.naming_info
    snapshots = list(scheduler.snapshots.values())
    is_prod = environment.lower() == c.PROD
    deployability_index = DeployabilityIndex.all_deployable() if is_prod else DeployabilityIndex.create(snapshots)
    execution_time = now_timestamp()
    state.refresh_snapshot_intervals(snapshots)
    triggers: dict[SnapshotId, list[SnapshotId]] = {}
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
    units: dict[str, list[SchedulingUnit]] = {}
    for unit in dag.sorted:
        units.setdefault(unit.snapshot_name, []).append(unit)
    merged_ids = {s.snapshot_id for s in merged}
    return ScheduledRun(
        scheduler=scheduler,
        naming_info=naming_info,
        deployability_index=deployability_index,
        execution_time=execution_time,
        plan_id=plan_id,
        batches={s.name: [(int(start), int(end)) for start, end in b] for s, b in batched.items()},
        units=units,
        snapshots_to_create=to_create,
        environment_statements=state.get_environment_statements(naming_info.name),
        selected_models={s.node.dbt_unique_id for s in merged if s.node.dbt_unique_id},
        runs_environment_statements=bool(merged),
        auto_restatement_triggers={k: v for k, v in triggers.items() if k in merged_ids},
    )


def execute_environment_statements(run: ScheduledRun, stage: str) -> None:
    """``before_all`` / ``after_all`` (``stage``: ``BEFORE_ALL`` / ``AFTER_ALL``) with the
    arguments ``run_merged_intervals`` passes."""
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
    audits: list[AuditOutcome]
    rows_processed: int | None
    interval_count: int = 0


def execute_unit(run: ScheduledRun, unit: SchedulingUnit) -> UnitResult:
    """One ``CreateNode`` / ``EvaluateNode`` exactly as ``run_merged_intervals.run_node`` does.

    Raises what SQLMesh raises (a failed blocking audit: ``NodeAuditsErrors``, see
    :func:`~dagctl_dagster.sqlmesh.internals.audits.audit_failures`).
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
        return UnitResult(interval=None, audits=[], rows_processed=None)
    if not isinstance(unit, EvaluateNode):
        return UnitResult(interval=None, audits=[], rows_processed=None)
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
    interval = (int(start), int(end))
    return UnitResult(
        interval=interval,
        audits=audit_outcomes(audit_results),
        rows_processed=stats.total_rows_processed if stats is not None else None,
        interval_count=interval_count(snapshot, interval),
    )


def interval_count(snapshot: Snapshot, interval: tuple[int, int]) -> int:
    """How many of the node's intervals (days, hours, ...) one evaluated batch covers."""
    unit = snapshot.node.interval_unit
    if unit is None:  # a node without a cron's intervals: the batch is one
        return 1
    return max(1, (interval[1] - interval[0]) // unit.milliseconds)


def _physical_table(run: ScheduledRun, snapshot: Snapshot) -> str:
    return snapshot.table_name(is_deployable=run.deployability_index.is_deployable(snapshot))
