"""One SQLMesh session per project per run worker.

A run's model steps share one SQLMesh ``Context`` and one computation of the
environment's due intervals; each step then evaluates only its own model's batches
through SQLMesh's ``Scheduler.evaluate`` (the same call ``sqlmesh run`` makes from its
worker threads), which runs the model's audits and records the interval in state.

The session starts lazily, at the first model step. The claim-aware executor claims the
run's models before any step starts, so the due intervals are read after the claims are
held: a model another run finished a moment ago is no longer due here.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dagctl_dagster.config import ProjectConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditOutcome:
    name: str
    args: dict[str, Any]
    blocking: bool
    failed_rows: int

    @property
    def passed(self) -> bool:
        return self.failed_rows == 0


@dataclass
class ModelRun:
    """What evaluating one model's due batches did."""

    model: str
    intervals: list[tuple[int, int]] = field(default_factory=list)
    duration_s: float = 0.0
    rows_processed: int | None = None
    physical_table: str | None = None
    snapshot_version: str | None = None
    audits: list[AuditOutcome] = field(default_factory=list)
    in_environment: bool = True


class EnvironmentChanged(Exception):
    """The environment was re-planned while the run was executing."""


class SQLMeshRunSession:
    """The SQLMesh side of one run: thread-safe, started on first use, closed by the resource.

    Example::

        session = SQLMeshRunSession(Path("analytics"), project_config)
        try:
            result = session.run_model('"db"."analytics"."orders"')
        finally:
            session.close()
    """

    def __init__(self, project_dir: Path, project: ProjectConfig, log: logging.Logger | None = None):
        self.project_dir = project_dir
        self.project = project
        self.environment = project.environment
        self.log = log or logger
        self.initial_plan_applied = False
        self._lock = threading.Lock()
        self._started = False
        self._closed = False
        self._context: Any = None

    # -- lifecycle -------------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._started:
            return
        with self._lock:
            if self._closed:
                raise RuntimeError("the SQLMesh session of this run is already closed")
            if not self._started:
                self._start()
                self._started = True

    def _start(self) -> None:
        from sqlmesh.core import constants as c
        from sqlmesh.core.environment import execute_environment_statements
        from sqlmesh.core.snapshot import DeployabilityIndex
        from sqlmesh.utils.date import now_timestamp

        from dagctl_dagster.sqlmesh.context import load_context

        started = time.perf_counter()
        # Runs execute the environment as planned (state holds its snapshots), so the
        # project's model files are only parsed when an initial plan must be applied.
        self._context = load_context(self.project_dir, self.project, load=False)
        state = self._context.state_sync
        environment = state.get_environment(self.environment)
        if environment is None:
            environment = self._apply_initial_plan()
        self._plan_id = environment.plan_id
        self._naming_info = environment.naming_info

        self._scheduler = self._context.scheduler(environment=self.environment)
        snapshots = list(self._scheduler.snapshots.values())
        self._deployability_index = (
            DeployabilityIndex.all_deployable()
            if environment.name == c.PROD
            else DeployabilityIndex.create(snapshots)
        )
        self._execution_time = now_timestamp()
        state.refresh_snapshot_intervals(snapshots)
        merged = self._scheduler.merged_missing_intervals(
            execution_time=self._execution_time, deployability_index=self._deployability_index
        )
        self._batches = {
            snapshot.name: batches
            for snapshot, batches in self._scheduler.batch_intervals(
                merged, self._deployability_index, self._naming_info
            ).items()
        }
        evaluator = self._scheduler.snapshot_evaluator
        candidates = [
            s
            for s in snapshots
            if s.name in self._batches or not self._deployability_index.is_representative(s)
        ]
        self._to_create = {
            s.snapshot_id for s in evaluator.get_snapshots_to_create(candidates, self._deployability_index)
        }
        self._environment_statements = state.get_environment_statements(environment.name)
        execute_environment_statements(
            adapter=evaluator.adapter,
            environment_statements=self._environment_statements,
            runtime_stage=_runtime_stage("BEFORE_ALL"),
            environment_naming_info=self._naming_info,
            default_catalog=self._scheduler.default_catalog,
            snapshots=self._scheduler.snapshots_by_name,
            execution_time=self._execution_time,
        )
        due = sum(len(b) for b in self._batches.values())
        self.log.info(
            f"SQLMesh session for project '{self.project.name}' ready in "
            f"{time.perf_counter() - started:.2f}s: environment '{self.environment}', "
            f"{len(snapshots)} snapshots, {len(self._batches)} models with {due} due batches"
        )

    def _apply_initial_plan(self):
        self.log.info(
            f"Environment '{self.environment}' of project '{self.project.name}' has never been "
            "planned: applying its initial plan (tables are created; this run then evaluates the "
            "due intervals model by model)."
        )
        self._context.load()
        self._context.plan(
            self.environment, auto_apply=True, no_prompts=True, skip_backfill=True, skip_tests=True
        )
        self.initial_plan_applied = True
        environment = self._context.state_sync.get_environment(self.environment)
        if environment is None:  # pragma: no cover - SQLMesh always creates it
            raise RuntimeError(f"SQLMesh did not create environment '{self.environment}'")
        return environment

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._context is None:
                return
            try:
                if self._started:
                    self._run_after_all()
            finally:
                self._context.close()
                self._context = None

    def _run_after_all(self) -> None:
        from sqlmesh.core.environment import execute_environment_statements

        try:
            execute_environment_statements(
                adapter=self._scheduler.snapshot_evaluator.adapter,
                environment_statements=self._environment_statements,
                runtime_stage=_runtime_stage("AFTER_ALL"),
                environment_naming_info=self._naming_info,
                default_catalog=self._scheduler.default_catalog,
                snapshots=self._scheduler.snapshots_by_name,
                execution_time=self._execution_time,
            )
        except Exception:
            self.log.exception("after_all statements of project '%s' failed", self.project.name)

    # -- questions the executor asks -----------------------------------------------

    def environment_changed(self) -> str | None:
        """A reason when the environment was re-planned since this run started, else None."""
        if not self._started or self._closed:
            return None
        # The summaries, not get_environment: that one deserialises every snapshot of the
        # environment, and this is asked twice a second while models run.
        current = next(
            (e for e in self._context.state_sync.get_environments_summary() if e.name == self.environment), None
        )
        if current is None:
            return f"environment '{self.environment}' was removed"
        if current.plan_id != self._plan_id:
            return (
                f"environment '{self.environment}' of project '{self.project.name}' changed "
                f"(plan {self._plan_id} → {current.plan_id})"
            )
        return None

    # -- one model -------------------------------------------------------------------

    def run_model(self, model_fqn: str) -> ModelRun:
        """Evaluate the model's due batches in order; audits run after each batch.

        Raises whatever SQLMesh raises (including ``NodeAuditsErrors`` for a failed blocking
        audit, whose interval is then not recorded); the outcome so far is attached as
        ``exc.model_run``.
        """
        from sqlmesh.core.snapshot import SnapshotIdBatch

        self._ensure_started()
        snapshot = self._scheduler.snapshots_by_name.get(model_fqn)
        if snapshot is None:
            return ModelRun(model=model_fqn, in_environment=False)
        evaluator = self._scheduler.snapshot_evaluator
        outcome = ModelRun(
            model=model_fqn,
            physical_table=snapshot.table_name(
                is_deployable=self._deployability_index.is_deployable(snapshot)
            ),
            snapshot_version=snapshot.version,
        )
        started = time.perf_counter()
        try:
            if snapshot.snapshot_id in self._to_create:
                evaluator.create_snapshot(
                    snapshot=snapshot,
                    snapshots=self._scheduler.snapshots_by_name,
                    deployability_index=self._deployability_index,
                    allow_destructive_snapshots=set(),
                    allow_additive_snapshots=set(),
                )
            for batch_index, (start, end) in enumerate(self._batches.get(model_fqn, [])):
                audit_results = self._scheduler.evaluate(
                    snapshot=snapshot,
                    start=start,
                    end=end,
                    execution_time=self._execution_time,
                    deployability_index=self._deployability_index,
                    batch_index=batch_index,
                    environment_naming_info=self._naming_info,
                    target_table_exists=True,
                )
                outcome.intervals.append((start, end))
                outcome.audits.extend(_audit_outcomes(audit_results))
                stats = evaluator.execution_tracker.get_execution_stats(
                    SnapshotIdBatch(snapshot_id=snapshot.snapshot_id, batch_id=batch_index)
                )
                if stats and stats.total_rows_processed is not None:
                    outcome.rows_processed = (outcome.rows_processed or 0) + stats.total_rows_processed
        except Exception as exc:
            failed_audits = getattr(exc, "errors", None)
            if failed_audits:
                outcome.audits.extend(_failed_audit_outcomes(failed_audits))
            outcome.duration_s = time.perf_counter() - started
            exc.model_run = outcome  # type: ignore[attr-defined]
            raise
        outcome.duration_s = time.perf_counter() - started
        return outcome


def _audit_outcomes(audit_results) -> list[AuditOutcome]:
    return [
        AuditOutcome(
            name=result.audit.name,
            args=dict(result.audit_args or {}),
            blocking=bool(result.blocking),
            failed_rows=int(result.count or 0),
        )
        for result in audit_results
        if not result.skipped
    ]


def _failed_audit_outcomes(audit_errors) -> list[AuditOutcome]:
    return [
        AuditOutcome(name=error.audit_name, args=dict(error.audit_args or {}), blocking=True, failed_rows=int(error.count))
        for error in audit_errors
    ]


def _runtime_stage(name: str):
    from sqlmesh.core.environment import RuntimeStage

    return getattr(RuntimeStage, name)
