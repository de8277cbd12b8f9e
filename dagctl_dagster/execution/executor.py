"""The claim-aware executor: model steps run concurrently in threads of the run worker.

Within a run, ready steps start at once, at most ``max_concurrent`` at a time
(``MAX_CONCURRENT_MODELS``, default 5); a failed step blocks its downstream while
independent steps go on. Across runs, the run claims all its models in one batch before
any starts; a model held by another live run is skipped here (an event names the holder)
and so is everything downstream of it in this run, to be done by the next run. That rule
never runs a model twice and never waits, so it cannot deadlock. Claims are leases,
renewed while the run lives, released as each model finishes and all at the end.

If a framework reports that its environment changed mid-run (a new SQLMesh plan), no new
step starts, running steps finish, and the rest are skipped ("environment changed").

This module holds the executor's settings, the Dagster executor and the run's loop, which
composes the rooms of a run: :mod:`.run_claims` (claims, pauses, models per step),
:mod:`.run_frameworks` (the framework sessions and their limits), :mod:`.step_machine` (ready
steps started on threads, or settled with a reason; :mod:`.step_body` runs on the thread),
:mod:`.tally` (the run summary) and :mod:`.not_run` (why a step did not run). Dagster's
private API is used only through :mod:`.dagster_adapter`.

Example (the default executor of everything ``load_definitions`` builds)::

    defs = dg.Definitions(assets=..., executor=claim_aware_executor)

    # one run with another bound:
    # execution: {config: {max_concurrent: 2}}
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import dagster as dg

from dagctl_dagster import settings as shared_settings
from dagctl_dagster.execution import dagster_adapter as adapter
from dagctl_dagster.execution.not_run import NotRunLedger
from dagctl_dagster.execution.run_claims import RunClaims
from dagctl_dagster.execution.run_frameworks import STOP_WAIT_SECONDS, RunFrameworks
from dagctl_dagster.execution.run_pools import apply_pool_limits
from dagctl_dagster.execution.step_machine import StepMachine
from dagctl_dagster.execution.tally import Tally
from dagctl_dagster.names import PROJECT_TAG, SUMMARY_PROJECT_KEY, ExecutorSummary

if TYPE_CHECKING:
    from dagctl_dagster.execution.claims import ClaimStore

# How long the idle step threads get to close what they opened when the run ends.
THREAD_END_WAIT_SECONDS = 5.0
RUN_SUMMARY_MESSAGE = "dagctl run summary"


class ExecutorConfigError(dg.DagsterError):
    """The executor's settings are invalid; the run fails before any model starts."""


@dataclass(frozen=True)
class ExecutorSettings:
    max_concurrent: int
    lease_seconds: float
    claims_url: str | None = None
    claims_timeout_seconds: int = shared_settings.DEFAULT_CLAIMS_TIMEOUT_SECONDS

    @classmethod
    def resolve(cls, config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> ExecutorSettings:
        environ = dict(os.environ if environ is None else environ)
        max_concurrent = config.get("max_concurrent")
        if max_concurrent is None:
            max_concurrent = parse_max_concurrent(
                environ.get(shared_settings.MAX_CONCURRENT_ENV), source=f"env var {shared_settings.MAX_CONCURRENT_ENV}"
            )
        else:
            max_concurrent = parse_max_concurrent(max_concurrent, source="executor config `max_concurrent`")
        try:
            lease = shared_settings.parse_lease_seconds(
                config.get("lease_seconds", shared_settings.DEFAULT_LEASE_SECONDS),
                source="executor config `lease_seconds`",
            )
            timeout = shared_settings.parse_claims_timeout_seconds(
                config.get("claims_timeout_seconds", shared_settings.DEFAULT_CLAIMS_TIMEOUT_SECONDS),
                source="executor config `claims_timeout_seconds`",
            )
        except (shared_settings.InvalidLeaseSeconds, shared_settings.InvalidClaimsTimeout) as exc:
            raise ExecutorConfigError(f"{exc}; fix it and launch the run again") from None
        return cls(
            max_concurrent=max_concurrent,
            lease_seconds=lease,
            claims_url=config.get("claims_url"),
            claims_timeout_seconds=timeout,
        )


def parse_max_concurrent(value: Any, *, source: str) -> int:
    """A positive integer, or an :class:`ExecutorConfigError` naming where the value came from."""
    try:
        return shared_settings.parse_max_concurrent(value, source=source)
    except shared_settings.InvalidMaxConcurrent as exc:
        raise ExecutorConfigError(f"{exc}; fix it and launch the run again") from None


@dg.executor(
    name="claim_aware",
    config_schema={
        "max_concurrent": dg.Field(
            dg.Noneable(int),
            is_required=False,
            default_value=None,
            description=f"Most model steps at once; default: env {shared_settings.MAX_CONCURRENT_ENV}, "
            f"else {shared_settings.DEFAULT_MAX_CONCURRENT}.",
        ),
        "lease_seconds": dg.Field(
            float,
            is_required=False,
            default_value=shared_settings.DEFAULT_LEASE_SECONDS,
            description="Claim lease; a dead run worker's claims become free after it.",
        ),
        "claims_url": dg.Field(
            dg.Noneable(dg.StringSource),
            is_required=False,
            default_value=None,
            description="Claim store URL (use {env: VAR}); default: DAGCTL_CLAIMS_URL, the instance's "
            "PostgreSQL, else SQLite in DAGSTER_HOME.",
        ),
        "claims_timeout_seconds": dg.Field(
            int,
            is_required=False,
            default_value=shared_settings.DEFAULT_CLAIMS_TIMEOUT_SECONDS,
            description="A PostgreSQL claim store slower than this to connect or answer has stalled: "
            "the run fails fast instead of waiting on it.",
        ),
        "retries": adapter.get_retries_config(),
    },
)
def claim_aware_executor(init_context: dg.InitExecutorContext) -> adapter.Executor:
    """Runs model steps concurrently in one process, claiming models across overlapping runs."""
    config = dict(init_context.executor_config)
    settings = ExecutorSettings.resolve(config)
    retries = adapter.RetryMode.from_config(config.get("retries") or {"enabled": {}})  # type: ignore[arg-type]
    return ClaimAwareExecutor(settings, retries or adapter.RetryMode.ENABLED)


class ClaimAwareExecutor(adapter.Executor):
    def __init__(self, settings: ExecutorSettings, retries: adapter.RetryMode) -> None:
        self.settings = settings
        self._retries = retries

    @property
    def retries(self) -> adapter.RetryMode:
        return self._retries

    def execute(
        self, plan_context: adapter.PlanOrchestrationContext, execution_plan: adapter.ExecutionPlan
    ) -> Iterator[adapter.DagsterEvent]:
        # Everything loaded so far (Dagster, the definitions, SQLMesh's modules) lives as long
        # as this run worker. Frozen, the cyclic GC stops re-walking it on every full
        # collection while models run and once more at interpreter exit (benchmarks/RESULTS.md).
        gc.freeze()
        yield adapter.engine_event(
            plan_context,
            f"Claim-aware executor: up to {self.settings.max_concurrent} model steps at once in process {os.getpid()}",
            {"max_concurrent": self.settings.max_concurrent, "pid": os.getpid()},
        )
        yield from adapter.run_with_execution_context(plan_context, self, self._iterate)

    def _iterate(
        self, job_context: adapter.PlanExecutionContext, execution_plan: adapter.ExecutionPlan
    ) -> Iterator[adapter.DagsterEvent]:
        # Imported here, not at module level: SQLAlchemy is only needed by run workers, and
        # every code location load imports this module.
        from dagctl_dagster.execution.claims import ClaimStore

        store = ClaimStore.from_environment(
            instance=job_context.instance,
            url=self.settings.claims_url,
            lease_seconds=self.settings.lease_seconds,
            timeout_seconds=self.settings.claims_timeout_seconds,
        )
        try:
            with adapter.storage_connections_held_open(
                job_context.instance, max_connections=self.settings.max_concurrent + 2
            ):
                started = time.perf_counter()
                tally = Tally()
                with adapter.started_plan(job_context, execution_plan) as plan:
                    yield from _RunExecution(plan, self.settings, store, tally).events()
                yield from _summary_events(job_context, tally, time.perf_counter() - started)
        finally:
            store.dispose()


def _summary_events(
    job_context: adapter.PlanExecutionContext, tally: Tally, duration_s: float
) -> Iterator[adapter.DagsterEvent]:
    """The run's summary; a run spanning projects adds one per project (each project's
    ``dagctl/<project>/runs`` record reads its own)."""
    yield _summary_event(job_context, tally.summary(duration_s), None)
    projects = tally.projects()
    if len(projects) > 1:
        for project in projects:
            yield _summary_event(job_context, tally.summary(duration_s, project), project)


def _summary_event(
    job_context: adapter.PlanExecutionContext, summary: ExecutorSummary, project: str | None
) -> adapter.DagsterEvent:
    metadata: dict[str, Any] = summary.metadata()
    title = RUN_SUMMARY_MESSAGE
    if project is not None:
        metadata[SUMMARY_PROJECT_KEY] = project
        title = f"{RUN_SUMMARY_MESSAGE} of project '{project}'"
    counts = ", ".join(f"{k}={v}" for k, v in summary.metadata().items())
    return adapter.engine_event(job_context, f"{title}: {counts}", metadata)


class _RunExecution:
    """One run: its claims, its framework sessions and its steps, composed into one loop."""

    def __init__(self, plan: adapter.PlanRun, settings: ExecutorSettings, store: ClaimStore, tally: Tally) -> None:
        self.plan = plan
        self.settings = settings
        self.steps = plan.steps_in_order()
        models_by_step = {step.key: plan.models_of(step) for step in self.steps}
        self.claims = RunClaims(store, plan, models_by_step)
        tally.models_by_step = models_by_step
        tally.project_of_step = {step.key: adapter.step_tags(step).get(PROJECT_TAG, "") for step in self.steps}
        self.frameworks = RunFrameworks.of_run(plan, settings.max_concurrent)
        self.tally = tally
        # Held for the whole run: the steps record in it, the tally and the failure hooks read it.
        self.not_run = NotRunLedger.of_run(plan.run_id)
        self.machine = StepMachine(
            plan, settings.max_concurrent, self.claims, self.frameworks, self.tally, self.not_run
        )

    def events(self) -> Iterator[adapter.DagsterEvent]:
        with adapter.captured_compute_logs(self.plan.job_context, [s.key for s in self.steps]) as capture_events:
            yield from capture_events
            try:
                yield from self.claims.claim()
                yield from apply_pool_limits(self.plan)
                with self.claims.heartbeat(interval=self.settings.lease_seconds / 3):
                    yield from self.frameworks.prepare(
                        self._interrupt, self.claims.models_of, self.claims.paused_of_projects
                    )
                    yield from self._loop()
            finally:
                self.machine.workers.wait(STOP_WAIT_SECONDS)
                self.machine.workers.close(THREAD_END_WAIT_SECONDS)
                yield from self.claims.release_all()

    def _loop(self) -> Iterator[adapter.DagsterEvent]:
        # A step's thread reports hooks and its done marker after the step's final event,
        # which may already complete the plan: wait for every thread to say done.
        plan, machine = self.plan, self.machine
        while not plan.is_complete or machine.busy:
            if plan.interrupt_requested():
                plan.mark_interrupted()
                yield from self._interrupt()
            yield from machine.drain(block=machine.running > 0)
            yield from self.claims.ownership_events()
            launched = yield from machine.launch_ready()
            self.claims.release_finished()
            yield from plan.concurrency_events()
            if not launched and not machine.busy and not plan.is_complete:
                plan.sleep_til_ready()

    def _interrupt(self, preparation_stopped: bool = True) -> Iterator[adapter.DagsterEvent]:
        """The run is terminated: no new step, running ones asked to stop, claims released.

        ``preparation_stopped``: False when the projects' preparation (SQLMesh's first plan, say)
        was asked to stop and was still running when the wait ran out; the message says so.
        """
        self.frameworks.interrupt()
        running = self.machine.running
        workers = self.machine.workers
        stopped = workers.wait(STOP_WAIT_SECONDS)
        yield from self.claims.release_all()
        steps = f"{running} running step(s) were asked to stop " + (
            "and stopped" if stopped else f"and {len(workers.running)} did not stop within {STOP_WAIT_SECONDS:.0f}s"
        )
        preparation = (
            "" if preparation_stopped else f"; the projects' preparation did not stop within {STOP_WAIT_SECONDS:.0f}s"
        )
        yield adapter.engine_event(
            self.plan.job_context, f"Run terminated: no new step started; {steps}{preparation}; claims released."
        )
        raise adapter.DagsterExecutionInterruptedError()
