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
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dagctl_dagster.cost import QueryCost, counting_enabled
from dagctl_dagster.execution.framework import (
    Preparation,
    Refusal,
    RunFramework,
    RunSetup,
    RunStep,
    StepGrant,
    StepGrants,
    StopReason,
)
from dagctl_dagster.execution.not_run import NotRun
from dagctl_dagster.names import SQLMESH_MODEL_TAG, NotRunReason
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
    NOT_DEPLOYED = "not_deployed"  # the first plan failed on another model: nothing was promoted
    FAILED = "failed"


@dataclass
class ModelOutcome:
    """What one model step did; a failure is a value here, not an exception."""

    model: str
    status: ModelStatus
    intervals: list[tuple[int, int]] = field(default_factory=list)  # evaluated batches
    plan_intervals: list[tuple[int, int]] = field(default_factory=list)  # batches the first plan evaluated
    # What the first plan deployed without evaluating it: intervals an earlier plan (one that
    # failed, or of another environment) evaluated into the same table, now in the environment.
    kept_intervals: list[tuple[int, int]] = field(default_factory=list)
    interval_count: int = 0  # the node's intervals (days, hours, ...) all those batches cover
    plan_audits_failed: int = 0
    duration_s: float = 0.0  # the plan's evaluation time of the model plus the step's
    rows_processed: int | None = None
    row_count: int | None = None  # rows in its table afterwards, where known without counting
    physical_table: str | None = None
    snapshot_version: str | None = None
    audits: list[AuditOutcome] = field(default_factory=list)
    last_plan_rows: int | None = None  # rows the plan's last batch of it wrote (tracker), if counted
    # The step's statements to the warehouse; None when not counted (or the first plan evaluated it).
    cost: QueryCost | None = None
    error: str | None = None  # one line, secrets redacted
    traceback: str | None = None  # secrets redacted

    @property
    def evaluated_anything(self) -> bool:
        """Something of it is new in the environment: evaluated by the run or its first plan,
        or deployed by that plan (``kept_intervals``)."""
        return bool(self.intervals or self.plan_intervals or self.kept_intervals)


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
        self._plan_batches: dict[str, list[internals.PlanBatch]] = {}
        self._kept: dict[str, tuple[list[tuple[int, int]], int]] = {}
        self._plan_failures: dict[str, str] = {}
        self._steps: dict[str, RunStep] = {}
        self._paused: Mapping[str, str] = {}
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
        self._steps = {step.key: step for step in setup.steps}
        self._paused = setup.paused
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
                    + _held_out_note(self._held_out(context), self._paused_fqns(context))
                )
                state = internals.environment_state(context, self.environment)
            if stop():
                return Preparation(error=f"{self.label}: the run was stopped before any model started")
            self._run = internals.schedule_run(context, self.environment, state.plan_id or "")
            if self.initial_plan_applied:
                self._kept = self._deployed_unevaluated(self._run)
            if counting_enabled():
                internals.count_queries(self._run)
            internals.execute_environment_statements(self._run, "BEFORE_ALL")
        except Exception as exc:
            return Preparation(error=f"{self.label}: {_one_line(exc)}")
        limit, reason = self._concurrency_limit(context)
        notes.append(
            f"{self.label} ready in {time.perf_counter() - started:.2f}s: environment "
            f"'{self.environment}', {self._run.snapshot_count} snapshots, {_due_work(self._run.batches)}"
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
        """Unit tests, then the plan `sqlmesh plan --auto-apply` would apply; an error or None.

        Paused models and their downstream (``held_out``) are left out of it, as
        `sqlmesh plan --select-model '^(paused+)'` leaves them; a second plan then adds them
        without evaluating anything (`--skip-backfill`), so that the environment holds every
        model and the first run after a resume evaluates them.
        """
        from dagctl_dagster.sqlmesh.context import reload_project

        reload_project(context, self.location)
        failed_tests = internals.run_unit_tests(context)
        if failed_tests:
            names = "; ".join(f"{t.name}: {t.reason}" for t in failed_tests)
            return (
                f"{self.label}: {len(failed_tests)} SQLMesh unit test(s) failed, so environment "
                f"'{self.environment}' was not planned and nothing was deployed: {names}"
            )
        held_out = self._held_out(context)
        models = internals.project_nodes(context).models
        evaluated = [fqn for fqn, node in models.items() if node.role != "external" and fqn not in held_out]
        try:
            if evaluated:
                internals.apply_plan(
                    context,
                    internals.prepare_plan(context, self.environment, skip_tests=True, held_out=held_out),
                    circuit_breaker=stop,
                    evaluations=self._record_plan_evaluation,
                    failures=self._record_plan_failure,
                )
        except Exception as exc:
            if not self._plan_failures:
                raise
            return (
                f"{self.label}: the first plan of environment '{self.environment}' failed on "
                f"{_names(self._plan_failures)}, so nothing was deployed (as `sqlmesh plan` refuses to "
                f"apply; the tables it built are kept for the next plan): {_one_line(exc)}"
            )
        if held_out:
            internals.apply_plan(
                context,
                internals.prepare_plan(context, self.environment, skip_tests=True, skip_backfill=True),
                circuit_breaker=stop,
            )
        self.initial_plan_applied = True
        return None

    def _deployed_unevaluated(self, run: internals.ScheduledRun) -> dict[str, tuple[list[tuple[int, int]], int]]:
        """Models the first plan deployed with intervals it did not evaluate itself (an earlier,
        failed plan did, into the table this one promoted): new data in the environment."""
        kept = {}
        for name in run.snapshot_names:
            if name not in self._plan_batches:
                ranges, count = run.recorded_intervals(name)
                if ranges:
                    kept[name] = (ranges, count)
        return kept

    def _paused_fqns(self, context: Context) -> dict[str, str]:
        """The paused models of the location's projects, by FQN, with the pause's description."""
        from dagctl_dagster.sqlmesh.translator import model_asset_key

        if not self._paused:
            return {}
        return {
            fqn: self._paused[key]
            for fqn in context.models
            if (key := model_asset_key(fqn).to_user_string()) in self._paused
        }

    def _held_out(self, context: Context) -> list[str]:
        """What a first plan leaves out: the paused models and everything downstream of them."""
        paused = self._paused_fqns(context)
        return internals.downstream_of(context, paused) if paused else []

    def _record_plan_failure(self, snapshot_name: str, error: str) -> None:
        self._plan_failures[snapshot_name] = redact(error)

    def _record_plan_evaluation(self, batch: internals.PlanBatch) -> None:
        self._plan_batches.setdefault(batch.snapshot_name, []).append(batch)

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

    def refusal(self, step_key: str) -> Refusal | None:
        """A model the failed first plan left undeployed does not start: it is skipped, so that
        the step of the model the plan failed on can still report that model's own error.
        If no step of the run is one the plan failed on, it fails instead (the run is not green)."""
        step = self._steps.get(step_key)
        fqn = step.tags.get(SQLMESH_MODEL_TAG) if step is not None else None
        if not self._plan_failures or fqn is None or fqn in self._plan_failures:
            return None
        failed_here = any(s.tags.get(SQLMESH_MODEL_TAG) in self._plan_failures for s in self._steps.values())
        return Refusal(NotRun(NotRunReason.NOT_DEPLOYED, self.not_deployed_reason(fqn)), downstream_asked=failed_here)

    def not_deployed_reason(self, model_fqn: str) -> str:
        """One line: the model is not deployed, what the plan failed on, what it did of the model."""
        batches = self._plan_batches.get(model_fqn, [])
        did = (
            f"SQLMesh evaluated {len(batches)} batch(es) of it into its physical table, kept for the next plan"
            if batches
            else "SQLMesh evaluated nothing of it"
        )
        return (
            f"SQLMesh model {_names([model_fqn])} not deployed: the first plan of environment "
            f"'{self.environment}' failed on {_names(self._plan_failures)}, so SQLMesh promoted nothing "
            f"({did})."
        )

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
        if self._plan_failures:
            return ModelOutcome(model_fqn, ModelStatus.NOT_DEPLOYED, error=self.not_deployed_reason(model_fqn))
        run = self._run
        if error or run is None:
            return ModelOutcome(model_fqn, ModelStatus.NOT_PREPARED, error=error or f"{self.label} was not prepared")
        snapshot = run.facts(model_fqn)
        if snapshot is None:
            return ModelOutcome(model_fqn, ModelStatus.NOT_IN_ENVIRONMENT)
        outcome = _plan_outcome(model_fqn, self._plan_batches.get(model_fqn, []))
        outcome.kept_intervals, kept_count = self._kept.get(model_fqn, ([], 0))
        outcome.interval_count += kept_count
        outcome.physical_table = snapshot.physical_table
        outcome.snapshot_version = snapshot.version
        started = time.perf_counter()
        with self._engine_guard(blocking=True), internals.measuring_queries() as spent:
            try:
                last_rows = self._execute_units(run, model_fqn, outcome, grant.holds_claims)
                if outcome.status is ModelStatus.EVALUATED:
                    outcome.row_count = internals.table_row_count(run, model_fqn, last_rows)
            except Exception as exc:
                outcome.status = ModelStatus.FAILED
                outcome.error = _one_line(exc)
                outcome.traceback = redacted_traceback(exc)
                outcome.audits.extend(internals.audit_failures(exc))
        outcome.duration_s += time.perf_counter() - started
        if counting_enabled() and not outcome.plan_intervals:
            outcome.cost = spent()
        return outcome

    def _execute_units(
        self, run: internals.ScheduledRun, model_fqn: str, outcome: ModelOutcome, holds_claims: Callable[[], bool]
    ) -> int | None:
        """Evaluates the model's units into ``outcome``; returns the rows its last evaluated
        batch wrote, as SQLMesh's execution tracker counted them (None where it did not)."""
        last_rows = outcome.last_plan_rows
        for unit in run.units.get(model_fqn, []):
            if self._stopping.is_set():
                outcome.status = ModelStatus.STOPPED
                return None
            if not holds_claims():
                outcome.status = ModelStatus.CLAIM_LOST
                return None
            result = internals.execute_unit(run, unit)
            if result.interval is None:
                continue
            outcome.intervals.append(result.interval)
            outcome.interval_count += result.interval_count
            outcome.audits.extend(result.audits)
            last_rows = result.rows_processed
            if result.rows_processed is not None:
                outcome.rows_processed = (outcome.rows_processed or 0) + result.rows_processed
        if outcome.evaluated_anything:
            outcome.status = ModelStatus.EVALUATED
        return last_rows

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

    # -- freshness -----------------------------------------------------------------------

    def completed_intervals(self) -> list[internals.ModelIntervals] | None:
        """The environment's interval records, read on this run's own connection (for the
        ``dagctl_freshness`` checks a run executes after its models); None while the session
        has no Context open (no model of the run used it): the caller reads state itself."""
        context = self._context
        if context is None:
            return None
        with self._engine_guard(blocking=True):
            return internals.completed_intervals(context, self.environment)

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


def _names(fqns: Iterable[str]) -> str:
    """Models as users name them (``schema.table``), for messages."""
    from dagctl_dagster.sqlmesh.translator import schema_and_table

    return ", ".join(sorted(".".join(schema_and_table(fqn)) for fqn in fqns))


def _held_out_note(held_out: list[str], paused: Mapping[str, str]) -> str:
    if not held_out:
        return ""
    downstream = [fqn for fqn in held_out if fqn not in paused]
    pauses = "; ".join(f"{_names([fqn])} is {why}" for fqn, why in sorted(paused.items()))
    return (
        f" It left out the paused {_names(paused)}"
        + (f" and downstream {_names(downstream)}" if downstream else "")
        + f" (as `sqlmesh plan --select-model '{internals.held_out_selection(sorted(paused))}'`), then added "
        "them to the environment without evaluating them (`--skip-backfill`): the first run after "
        f"`dagctl-dagster models resume` evaluates them. {pauses}."
    )


def _due_work(batches: dict[str, list[tuple[int, int]]]) -> str:
    """``nothing due``, or ``3 due batches in 2 snapshots``."""
    due = sum(len(b) for b in batches.values())
    with_due = sum(1 for b in batches.values() if b)
    if not due:
        return "nothing due"
    return f"{due} due batch{'es' if due != 1 else ''} in {with_due} snapshot{'s' if with_due != 1 else ''}"


def _plan_outcome(model_fqn: str, batches: list[internals.PlanBatch]) -> ModelOutcome:
    """What the run's first plan did to the model, as SQLMesh's console reported it."""
    rows = [b.rows_processed for b in batches if b.rows_processed is not None]
    return ModelOutcome(
        model_fqn,
        ModelStatus.NOTHING_DUE,
        plan_intervals=[b.interval for b in batches],
        interval_count=sum(b.interval_count for b in batches),
        plan_audits_failed=sum(b.audits_failed for b in batches),
        duration_s=sum(b.duration_s for b in batches),
        rows_processed=sum(rows) if rows else None,
        last_plan_rows=batches[-1].rows_processed if batches else None,
    )


def _bounded(close: Callable[[], None], seconds: float, log: logging.Logger, label: str) -> None:
    closer = threading.Thread(target=close, name="dagctl-sqlmesh-close", daemon=True)
    closer.start()
    closer.join(seconds)
    if closer.is_alive():
        log.warning(f"{label}: connections did not close within {seconds:.0f}s of the interrupt; leaving them")


def _one_line(exc: BaseException) -> str:
    text = redact(" ".join(str(exc).split()) or type(exc).__name__)
    return text if internals.is_sqlmesh_error(exc) else f"{type(exc).__name__}: {text}"
