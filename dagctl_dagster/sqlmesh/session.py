"""One SQLMesh session per SQLMesh location per run worker: what `sqlmesh run` does, model by model.

The executor prepares the session on its own thread before any model step starts: it waits
for a finalized environment, applies the first plan when the environment has never been
planned (running the project's unit tests first, as `sqlmesh plan` does), computes the due
scheduling units exactly as ``Scheduler.run`` does and runs ``before_all``. Each model step
then executes its own model's units (see :mod:`dagctl_dagster.sqlmesh.internals`).

Model steps run in threads. SQLMesh gives each thread its own cursor unless the gateway
allows one task (``concurrent_tasks: 1``, DuckDB's default), where every thread would share
one cursor: the session then allows one model step at a time and never reads state while a
model runs.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dagctl_dagster.cost import QueryCost, counting_enabled
from dagctl_dagster.execution.framework import Preparation, RunFramework, RunSetup, StepGrant, StepGrants, StopReason
from dagctl_dagster.secrets import redact, redacted_traceback
from dagctl_dagster.sqlmesh import internals
from dagctl_dagster.sqlmesh.context import SQLMeshLocation
from dagctl_dagster.sqlmesh.internals import AuditOutcome

if TYPE_CHECKING:
    from sqlmesh import Context

if TYPE_CHECKING:
    from dagctl_dagster.execution.framework import OpContext

logger = logging.getLogger(__name__)

CLOSE_AFTER_INTERRUPT_SECONDS = 10.0


class ModelStatus(enum.Enum):
    EVALUATED = "evaluated"
    NOTHING_DUE = "nothing_due"
    NOT_IN_ENVIRONMENT = "not_in_environment"
    STOPPED = "stopped"
    CLAIM_LOST = "claim_lost"
    NOT_PREPARED = "not_prepared"  # the project's first plan or its preparation failed
    FAILED = "failed"


@dataclass
class ModelOutcome:
    """What one model step did; a failure is a value here, not an exception."""

    model: str
    status: ModelStatus
    intervals: list[tuple[int, int]] = field(default_factory=list)  # evaluated batches
    plan_intervals: list[tuple[int, int]] = field(default_factory=list)  # batches the first plan evaluated
    interval_count: int = 0  # the node's intervals (days, hours, ...) all those batches cover
    plan_audits_failed: int = 0
    duration_s: float = 0.0
    rows_processed: int | None = None
    physical_table: str | None = None
    snapshot_version: str | None = None
    audits: list[AuditOutcome] = field(default_factory=list)
    # The step's statements to the warehouse; None when not counted (or the first plan evaluated it).
    cost: QueryCost | None = None
    error: str | None = None  # one line, secrets redacted
    traceback: str | None = None  # secrets redacted

    @property
    def evaluated_anything(self) -> bool:
        return bool(self.intervals or self.plan_intervals)


class SQLMeshRunSession(RunFramework):
    """The SQLMesh side of one run on one location (a project, or a multi-repository group)."""

    def __init__(self, location: SQLMeshLocation, environment: str, log: logging.Logger | None = None):
        self.location = location
        self.environment = environment
        self.log = log or logger
        self.initial_plan_applied = False
        self._context: Context | None = None
        self._run: internals.ScheduledRun | None = None
        self._shared_cursor = False
        self._engine_lock = threading.Lock()
        self._stopping = threading.Event()
        self._interrupted = False
        self._plan_evaluations: dict[str, list[tuple[int, int]]] = {}
        self._plan_audits_failed: dict[str, int] = {}
        self._plan_interval_counts: dict[str, int] = {}
        self._plan_failures: dict[str, str] = {}
        self._grants = StepGrants()
        self._preparation: Preparation | None = None
        self._prepare_lock = threading.Lock()

    @property
    def projects(self) -> frozenset[str]:
        return frozenset(owner for _, owner in self.location.owners)

    @property
    def working_dir(self) -> Path:
        return self.location.working_dir

    @property
    def label(self) -> str:
        names = sorted(self.projects)
        return f"SQLMesh project '{names[0]}'" if len(names) == 1 else f"SQLMesh projects {', '.join(names)}"

    # -- preparing -----------------------------------------------------------------------

    def prepare(self, setup: RunSetup) -> Preparation:
        self._preparation = self._prepare(setup.should_stop)
        return self._preparation

    def _prepare(self, should_stop: Callable[[], bool]) -> Preparation:
        from dagctl_dagster.sqlmesh.context import load_context, load_materializations

        started = time.perf_counter()
        try:
            context = self._context = load_context(self.location, load=False)
            load_materializations(context, self.location)
            stop = lambda: should_stop() or self._stopping.is_set()  # noqa: E731
            state = internals.wait_for_finalized(context, self.environment, should_stop=stop)
            notes: list[str] = []
            if not state.exists:
                failure = self._apply_first_plan(context, stop)
                if failure:
                    return Preparation(error=failure)
                notes.append(
                    f"{self.label}: environment '{self.environment}' had never been planned; applied its first plan."
                )
                state = internals.environment_state(context, self.environment)
            if stop():
                return Preparation(error=f"{self.label}: the run was stopped before any model started")
            self._run = internals.schedule_run(context, self.environment, state.plan_id or "")
            if counting_enabled():
                internals.count_queries(self._run)
            internals.execute_environment_statements(self._run, "BEFORE_ALL")
        except Exception as exc:
            return Preparation(error=f"{self.label}: {_one_line(exc)}")
        limit, reason = self._concurrency_limit(context)
        due = sum(len(b) for b in self._run.batches.values())
        notes.append(
            f"{self.label} ready in {time.perf_counter() - started:.2f}s: environment "
            f"'{self.environment}', {self._run.snapshot_count} snapshots, {len(self._run.batches)} "
            f"with {due} due batches"
        )
        return Preparation(concurrency_limit=limit, limit_reason=reason, notes=tuple(notes))

    def _prepared_or_error(self) -> str | None:
        """Prepares on first use under an executor that does not (in-process, multiprocess).

        The claim-aware executor prepares every session before any step starts; Dagster's own
        executors just run steps, so the first step prepares the session for the others.
        """
        with self._prepare_lock:
            if self._preparation is None:
                self._preparation = self.prepare(RunSetup(should_stop=lambda: False))
        return self._preparation.error

    def _concurrency_limit(self, context: Context) -> tuple[int, str | None]:
        tasks = internals.concurrent_tasks(context)
        self._shared_cursor = internals.shares_one_cursor(context)
        if self._shared_cursor:
            tasks = 1
        reason = None
        if tasks == 1:
            reason = (
                f"{self.label}: its gateway allows one concurrent task (SQLMesh's `concurrent_tasks`, "
                "1 by default for DuckDB), so its models run one at a time, as `sqlmesh run` runs them; "
                "set `concurrent_tasks` on the gateway's connection to run more at once"
            )
        return tasks, reason

    def _apply_first_plan(self, context: Context, stop: Callable[[], bool]) -> str | None:
        """Unit tests, then the plan `sqlmesh plan --auto-apply` would apply; an error or None."""
        from dagctl_dagster.sqlmesh.context import reload_project

        reload_project(context, self.location)
        failed_tests = internals.run_unit_tests(context)
        if failed_tests:
            names = "; ".join(f"{t.name}: {t.reason}" for t in failed_tests)
            return (
                f"{self.label}: {len(failed_tests)} SQLMesh unit test(s) failed, so environment "
                f"'{self.environment}' was not planned and nothing was deployed: {names}"
            )
        try:
            internals.apply_plan(
                context,
                internals.prepare_plan(context, self.environment, skip_tests=True),
                circuit_breaker=stop,
                evaluations=self._record_plan_evaluation,
                failures=self._record_plan_failure,
            )
        except Exception as exc:
            if not self._plan_failures:
                raise
            failed = ", ".join(sorted(self._plan_failures))
            return (
                f"{self.label}: the first plan of environment '{self.environment}' failed on {failed}, so "
                f"nothing was deployed (as `sqlmesh plan` refuses to apply): {_one_line(exc)}"
            )
        self.initial_plan_applied = True
        return None

    def _record_plan_failure(self, snapshot_name: str, error: str) -> None:
        self._plan_failures[snapshot_name] = redact(error)

    def _record_plan_evaluation(
        self, snapshot_name: str, interval: tuple[int, int], count: int, audits_failed: int
    ) -> None:
        self._plan_evaluations.setdefault(snapshot_name, []).append(interval)
        self._plan_interval_counts[snapshot_name] = self._plan_interval_counts.get(snapshot_name, 0) + count
        self._plan_audits_failed[snapshot_name] = self._plan_audits_failed.get(snapshot_name, 0) + audits_failed

    # -- questions the executor asks -----------------------------------------------------

    def stop_reason(self) -> StopReason | None:
        if self._run is None or self._context is None:
            return None
        with self._engine_guard(blocking=False) as free:
            if not free:
                return None
            try:
                state = internals.environment_state(self._context, self.environment)
            except Exception as exc:  # a failed read says nothing about the environment
                self.log.warning(f"{self.label}: could not read environment '{self.environment}': {_one_line(exc)}")
                return None
        if not state.exists:
            return StopReason(f"environment '{self.environment}' of {self.label} was removed", expected=False)
        if state.plan_id != self._run.plan_id or not state.finalized:
            return StopReason(
                f"environment '{self.environment}' of {self.label} was re-planned "
                f"(plan {self._run.plan_id} → {state.plan_id})",
                expected=True,
            )
        return None

    def start_step(self, grant: StepGrant) -> None:
        self._grants.give(grant)

    def interrupt(self) -> None:
        self._stopping.set()
        self._interrupted = True
        if self._context is not None:
            internals.interrupt_queries(self._context)

    def thread_ending(self) -> None:
        internals.release_thread_connections(self._context)

    # -- one model -----------------------------------------------------------------------

    def grant_of(self, context: OpContext) -> StepGrant:
        """What the executor handed the step ``context`` runs (see :class:`StepGrant`)."""
        return self._grants.of(context)

    def evaluate_model(self, model_fqn: str, grant: StepGrant) -> ModelOutcome:
        """Executes the model's due units in order, each only while the step holds its claims;
        audits run after each batch."""
        error = self._prepared_or_error()
        if model_fqn in self._plan_failures:
            return ModelOutcome(model_fqn, ModelStatus.FAILED, error=self._plan_failures[model_fqn])
        run = self._run
        if error or run is None:
            return ModelOutcome(model_fqn, ModelStatus.NOT_PREPARED, error=error or f"{self.label} was not prepared")
        snapshot = run.facts(model_fqn)
        if snapshot is None:
            return ModelOutcome(model_fqn, ModelStatus.NOT_IN_ENVIRONMENT)
        outcome = ModelOutcome(
            model_fqn,
            ModelStatus.NOTHING_DUE,
            plan_intervals=list(self._plan_evaluations.get(model_fqn, [])),
            plan_audits_failed=self._plan_audits_failed.get(model_fqn, 0),
            interval_count=self._plan_interval_counts.get(model_fqn, 0),
            physical_table=snapshot.physical_table,
            snapshot_version=snapshot.version,
        )
        started = time.perf_counter()
        with self._engine_guard(blocking=True), internals.measuring_queries() as spent:
            try:
                self._execute_units(run, model_fqn, outcome, grant.holds_claims)
            except Exception as exc:
                outcome.status = ModelStatus.FAILED
                outcome.error = _one_line(exc)
                outcome.traceback = redacted_traceback(exc)
                outcome.audits.extend(internals.audit_failures(exc))
        outcome.duration_s = time.perf_counter() - started
        if counting_enabled() and not outcome.plan_intervals:
            outcome.cost = spent()
        return outcome

    def _execute_units(
        self, run: internals.ScheduledRun, model_fqn: str, outcome: ModelOutcome, holds_claims: Callable[[], bool]
    ) -> None:
        for unit in run.units.get(model_fqn, []):
            if self._stopping.is_set():
                outcome.status = ModelStatus.STOPPED
                return
            if not holds_claims():
                outcome.status = ModelStatus.CLAIM_LOST
                return
            result = internals.execute_unit(run, unit)
            if result.interval is None:
                continue
            outcome.intervals.append(result.interval)
            outcome.interval_count += result.interval_count
            outcome.audits.extend(result.audits)
            if result.rows_processed is not None:
                outcome.rows_processed = (outcome.rows_processed or 0) + result.rows_processed
        if outcome.evaluated_anything:
            outcome.status = ModelStatus.EVALUATED

    @contextmanager
    def _engine_guard(self, *, blocking: bool) -> Iterator[bool]:
        """Serialises use of the one shared cursor; a no-op when each thread has its own."""
        if not self._shared_cursor:
            yield True
            return
        acquired = self._engine_lock.acquire(blocking=blocking)
        try:
            yield acquired
        finally:
            if acquired:
                self._engine_lock.release()

    # -- closing -------------------------------------------------------------------------

    def close(self) -> None:
        """after_all (unless the run was interrupted), then the Context's connections."""
        context, self._context = self._context, None
        if context is None:
            return
        if self._interrupted:
            _bounded(context.close, CLOSE_AFTER_INTERRUPT_SECONDS, self.log, self.label)
            return
        try:
            if self._run is not None:
                internals.execute_environment_statements(self._run, "AFTER_ALL")
        except Exception as exc:
            self.log.error(f"{self.label}: after_all statements failed: {_one_line(exc)}")
        finally:
            context.close()


def _bounded(close: Callable[[], None], seconds: float, log: logging.Logger, label: str) -> None:
    closer = threading.Thread(target=close, name="dagctl-sqlmesh-close", daemon=True)
    closer.start()
    closer.join(seconds)
    if closer.is_alive():
        log.warning(f"{label}: connections did not close within {seconds:.0f}s of the interrupt; leaving them")


def _one_line(exc: BaseException) -> str:
    text = redact(" ".join(str(exc).split()) or type(exc).__name__)
    return text if internals.is_sqlmesh_error(exc) else f"{type(exc).__name__}: {text}"
