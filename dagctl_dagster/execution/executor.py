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

Example (the default executor of everything ``load_definitions`` builds)::

    defs = dg.Definitions(assets=..., executor=claim_aware_executor)

    # one run with another bound:
    # execution: {config: {max_concurrent: 2}}
"""

from __future__ import annotations

import gc
import os
import queue
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import dagster as dg

from dagctl_dagster import settings as shared_settings
from dagctl_dagster.execution import dagster_adapter as adapter
from dagctl_dagster.execution.framework import Preparation, RunFramework, StopReason, set_left_out_models
from dagctl_dagster.execution.step_workers import StepWorkers
from dagctl_dagster.names import (
    NOT_RUN_REASON_KEY,
    PROJECT_TAG,
    ExecutorSummary,
    NotRunReason,
    acts_only_on_failure,
)

if TYPE_CHECKING:
    from dagctl_dagster.execution.claims import ClaimOwnership
    from dagctl_dagster.execution.pauses import Pause

ENVIRONMENT_POLL_SECONDS = 0.5
# How long a stopping run waits for its running steps before it reports and releases claims.
STOP_WAIT_SECONDS = 15.0
RELEASE_INTERVAL_SECONDS = 1.0
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

    @classmethod
    def resolve(cls, config: dict[str, Any], environ: dict[str, str] | None = None) -> ExecutorSettings:
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
        except shared_settings.InvalidLeaseSeconds as exc:
            raise ExecutorConfigError(f"{exc}; fix it and launch the run again") from None
        return cls(max_concurrent=max_concurrent, lease_seconds=lease, claims_url=config.get("claims_url"))


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
    def __init__(self, settings: ExecutorSettings, retries: adapter.RetryMode):
        self.settings = settings
        self._retries = retries

    @property
    def retries(self) -> adapter.RetryMode:
        return self._retries

    def execute(self, plan_context, execution_plan) -> Iterator[adapter.DagsterEvent]:
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

    def _iterate(self, job_context, execution_plan) -> Iterator[adapter.DagsterEvent]:
        # Imported here, not at module level: SQLAlchemy is only needed by run workers, and
        # every code location load imports this module.
        from dagctl_dagster.execution.claims import ClaimStore

        store = ClaimStore.from_environment(
            instance=job_context.instance, url=self.settings.claims_url, lease_seconds=self.settings.lease_seconds
        )
        try:
            with adapter.storage_connections_held_open(
                job_context.instance, max_connections=self.settings.max_concurrent + 2
            ):
                yield from _RunExecution(job_context, execution_plan, self.settings, store).events()
        finally:
            store.dispose()


@dataclass
class _StepMessage:
    kind: str  # "events" | "hooks" | "done" | "crash"
    step_key: str
    events: list[Any] = field(default_factory=list)
    error: str = ""


@dataclass
class _Counts:
    executed: set[str] = field(default_factory=set)
    claimed_elsewhere: set[str] = field(default_factory=set)
    environment_changed: set[str] = field(default_factory=set)
    not_run: dict[NotRunReason, set[str]] = field(default_factory=dict)  # steps by reason (run not green)
    skipped_downstream: set[str] = field(default_factory=set)
    paused: set[str] = field(default_factory=set)
    left_out_models: set[str] = field(default_factory=set)
    blocked: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)


@dataclass
class _FrameworkSlot:
    """A framework session of this run, its preparation and how many of its steps run now."""

    framework: RunFramework
    preparation: Preparation = field(default_factory=Preparation)
    in_flight: int = 0
    stop: StopReason | None = None
    last_check: float = 0.0

    @property
    def limit(self) -> int | None:
        return self.preparation.concurrency_limit


class _RunExecution:
    """One run's execution loop: claims, a bounded thread pool, the plan's state machine."""

    def __init__(self, job_context, execution_plan, settings: ExecutorSettings, store):
        self.job_context = job_context
        self.plan = execution_plan
        self.settings = settings
        self.store = store
        self.run_id = job_context.run_id
        self.messages: queue.Queue[_StepMessage] = queue.Queue()
        self.in_flight: dict[str, Any] = {}
        self.workers = StepWorkers(on_thread_end=self._step_thread_ending)
        self.ready: list[Any] = []
        self.retrying: set[str] = set()
        self.counts = _Counts()
        self._finished_models: list[str] = []
        self._last_release = 0.0
        self._release_error: str | None = None
        self.slots: list[_FrameworkSlot] = []
        self.ownership: ClaimOwnership | None = None
        self._slot_by_project: dict[str, _FrameworkSlot] = {}
        self.pauses: dict[str, Pause] = {}
        self.left_out_by_step: dict[str, dict[str, str]] = {}

    def events(self) -> Iterator[adapter.DagsterEvent]:
        steps = self.plan.get_steps_to_execute_in_topo_order()
        self.models_by_step = {
            step.key: [k.to_user_string() for k in adapter.asset_keys_of_step(self.job_context, step)] for step in steps
        }
        started = time.perf_counter()
        with adapter.started_plan(self.job_context, self.plan) as active:
            with adapter.captured_compute_logs(self.job_context, [s.key for s in steps]) as capture_events:
                yield from capture_events
                try:
                    self.held_by_step = yield from self._claim_models()
                    from dagctl_dagster.execution.claims import LeaseHeartbeat

                    with LeaseHeartbeat(
                        self.store, self.run_id, interval=self.settings.lease_seconds / 3, ownership=self.ownership
                    ):
                        yield from self._prepare_frameworks(active)
                        yield from self._loop(active)
                finally:
                    self.workers.wait(STOP_WAIT_SECONDS)
                    self.workers.close(THREAD_END_WAIT_SECONDS)
                    yield from self._release_all()
        yield self._summary(time.perf_counter() - started)

    def _claim_models(self) -> Generator[adapter.DagsterEvent, None, dict[str, dict[str, str]]]:
        models = sorted({m for ms in self.models_by_step.values() for m in ms})
        instance = self.job_context.instance

        def is_run_finished(run_id: str) -> bool:
            run = instance.get_run_by_id(run_id)
            return run is not None and run.is_finished

        self.pauses = self._read_pauses(models)
        result = self.store.claim(
            self.run_id, [m for m in models if m not in self.pauses], is_run_finished=is_run_finished
        )
        held_by_step: dict[str, dict[str, str]] = {}
        for step_key, step_models in self.models_by_step.items():
            holders = {m: result.held[m].run_id for m in step_models if m in result.held}
            if holders:
                held_by_step[step_key] = holders
        message = f"Claimed {len(result.won)} of {len(models)} models for run {self.run_id}"
        if result.held:
            message += f"; {len(result.held)} held by other runs: " + ", ".join(
                f"{m} (run {c.run_id})" for m, c in sorted(result.held.items())
            )
        yield adapter.engine_event(
            self.job_context,
            message,
            {"claimed": len(result.won), "held_elsewhere": len(result.held)},
        )
        from dagctl_dagster.execution.claims import ClaimOwnership

        self.ownership = ClaimOwnership(self.store, self.run_id, result.won)
        self.left_out_by_step = self._left_out_by_step(held_by_step)
        return held_by_step

    # -- paused models and multi-model steps ------------------------------------------

    def _read_pauses(self, models: list[str]) -> dict[str, Pause]:
        from dagctl_dagster.execution.claims import ClaimStoreError
        from dagctl_dagster.execution.pauses import PauseStore

        try:
            return PauseStore.of(self.store).paused(models)
        except Exception as exc:  # the run cannot tell what is paused: it must not start anything
            raise ClaimStoreError(
                f"claim store {self.store.masked_url} failed: could not read paused models: {self.store.describe(exc)}"
            ) from None

    def _left_out_by_step(self, held_by_step: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        """Per multi-model step (a dbt build), the models it must leave out and why; a step
        none of whose models can run is skipped as a whole instead."""
        left_out: dict[str, dict[str, str]] = {}
        for step_key, models in self.models_by_step.items():
            reasons = {m: f"claimed by run {run_id}" for m, run_id in held_by_step.get(step_key, {}).items()}
            reasons |= {m: self.pauses[m].describe() for m in models if m in self.pauses}
            if reasons and len(reasons) < len(models):
                left_out[step_key] = reasons
        return left_out

    def _narrow_to_runnable_models(self, step_key: str) -> Iterator[adapter.DagsterEvent]:
        """A multi-model step runs without the models it leaves out: they are neither its
        claims to check nor its models to release, and they are reported once, here."""
        reasons = self.left_out_by_step.get(step_key)
        if not reasons or not any(m in reasons for m in self.models_by_step.get(step_key, [])):
            return
        self.models_by_step[step_key] = [m for m in self.models_by_step[step_key] if m not in reasons]
        self.held_by_step.pop(step_key, None)
        self.counts.left_out_models.update(reasons)
        listed = "; ".join(f"{m} ({why})" for m, why in sorted(reasons.items()))
        yield adapter.engine_event(
            self.job_context,
            f"Leaving out of {step_key}: {listed}. Their downstream models in it are left out too; "
            "the next run does what is still due.",
            {"step": step_key, "left_out": len(reasons)},
        )

    def _release_built_node(self, step_key: str, event: Any) -> None:
        """A multi-model step (dbt) frees each model's claim as its node finishes."""
        models = self.models_by_step.get(step_key, [])
        if len(models) < 2 or event.event_type != dg.DagsterEventType.ASSET_MATERIALIZATION:
            return
        model = event.asset_key.to_user_string() if event.asset_key else None
        if model in models and model not in self._finished_models:
            self._finished_models.append(model)

    # -- frameworks --------------------------------------------------------------------

    def _prepare_frameworks(self, active) -> Iterator[adapter.DagsterEvent]:
        """Each framework gets ready (first plan, due intervals) before any of its steps starts.

        Preparation runs on a helper thread so that a termination is still noticed meanwhile.
        """
        frameworks = [r for r in adapter.resource_instances(self.job_context) if isinstance(r, RunFramework)]
        yield from self._enter_working_dir(frameworks)
        for framework in frameworks:
            slot = _FrameworkSlot(framework)
            self.slots.append(slot)
            for project in framework.projects:
                self._slot_by_project[project] = slot
            slot.preparation = yield from self._prepare_one(active, framework)
            for note in slot.preparation.notes:
                yield adapter.engine_event(self.job_context, note)
            if slot.preparation.limit_reason and (slot.limit or 0) < self.settings.max_concurrent:
                self.job_context.log.warning(slot.preparation.limit_reason)
            if slot.preparation.error:
                yield adapter.engine_event(self.job_context, slot.preparation.error, error=False)

    def _enter_working_dir(self, frameworks: list[RunFramework]) -> Iterator[adapter.DagsterEvent]:
        """The run worker's one process-wide side effect, on purpose: project code that opens
        files by relative path (a query's `read_csv('data/x.csv')`, a Python model's
        `open(...)`) finds them as when `sqlmesh` runs in the project's directory. Runs
        spanning projects with different directories stay where they are, and say so."""
        directories = {f.working_dir for f in frameworks if f.working_dir is not None}
        if len(directories) == 1:
            directory = directories.pop()
            os.chdir(directory)
            yield adapter.engine_event(self.job_context, f"Working directory of this run: {directory}")
        elif directories:
            yield adapter.engine_event(
                self.job_context,
                "This run spans projects in different directories: relative file paths in project code "
                f"resolve against {os.getcwd()}, not each project's own directory.",
            )

    def _prepare_one(self, active, framework: RunFramework) -> Generator[adapter.DagsterEvent, None, Preparation]:
        outcome: list[Preparation] = []
        interrupted = threading.Event()
        worker = threading.Thread(
            target=lambda: outcome.append(framework.prepare(interrupted.is_set, self._current_step_holds_claims)),
            name="dagctl-prepare",
            daemon=True,
        )
        worker.start()
        while worker.is_alive():
            worker.join(ENVIRONMENT_POLL_SECONDS)
            if active.check_for_interrupts():
                interrupted.set()
                framework.interrupt()
                worker.join(STOP_WAIT_SECONDS)
                active.mark_interrupted()
                yield from self._interrupt()
        return outcome[0] if outcome else Preparation(error="framework preparation ended without an outcome")

    def _slot_of(self, step) -> _FrameworkSlot | None:
        return self._slot_by_project.get(step.tags.get(PROJECT_TAG, ""))

    # -- the loop ------------------------------------------------------------------------

    def _loop(self, active) -> Iterator[adapter.DagsterEvent]:
        # A step's thread reports hooks and its done marker after the step's final event,
        # which may already complete the plan: wait for every thread to say done.
        while not active.is_complete or self.in_flight or self.ready:
            if active.check_for_interrupts():
                active.mark_interrupted()
                yield from self._interrupt()
            yield from self._drain(active, block=bool(self.in_flight))
            yield from self._ownership_events()
            self.ready.extend(active.get_steps_to_execute())
            launched = yield from self._launch_ready(active)
            self._release_finished_models()
            yield from active.concurrency_event_iterator(self.job_context)
            if not launched and not self.in_flight and not self.ready and not active.is_complete:
                active.sleep_til_ready()

    def _launch_ready(self, active) -> Generator[adapter.DagsterEvent, None, int]:
        launched = 0
        waiting: list[Any] = []
        for step in self.ready:
            if len(self.in_flight) >= self.settings.max_concurrent:
                waiting.append(step)
                continue
            slot = self._slot_of(step)
            if slot is not None and slot.limit is not None and slot.in_flight >= slot.limit:
                waiting.append(step)
                continue
            started = yield from self._start_or_settle(active, step, slot)
            launched += started
        self.ready = waiting
        return launched

    def _start_or_settle(self, active, step, slot: _FrameworkSlot | None) -> Generator[adapter.DagsterEvent, None, int]:
        """Starts the step, or records why it does not run (skipped or failed with a reason)."""
        step_context = self.job_context.for_step(step, active.get_known_state())
        yield from self._narrow_to_runnable_models(step.key)
        holders = self.held_by_step.get(step.key)
        paused = [self.pauses[m] for m in self.models_by_step.get(step.key, []) if m in self.pauses]
        if paused:
            self.counts.paused.add(step.key)
            yield from adapter.step_skipped(step_context, _paused_message(step.key, paused))
            active.mark_skipped(step.key)
        elif holders:
            self.counts.claimed_elsewhere.add(step.key)
            names = ", ".join(f"{model} is claimed by run {run_id}" for model, run_id in holders.items())
            yield from adapter.step_skipped(
                step_context,
                f"Skipping {step.key}: {names}. Its downstream steps in this run are skipped "
                "too; the next run does what is still due.",
            )
            active.mark_skipped(step.key)
        elif self.ownership is not None and not self.ownership.holds(self.models_by_step.get(step.key, [])):
            self.counts.not_run.setdefault(NotRunReason.CLAIM_LOST, set()).add(step.key)
            lost = ", ".join(self.models_by_step.get(step.key, [step.key]))
            yield from self._fail_unstarted(
                active,
                step_context,
                step.key,
                f"Not run: this run no longer holds the claim on {lost} (released, or its lease expired "
                "while the run could not renew it); another run may be evaluating it.",
                NotRunReason.CLAIM_LOST,
            )
        elif (stop := self._stop_reason(slot)) is not None and stop.expected:
            self.counts.environment_changed.add(step.key)
            yield from adapter.step_skipped(
                step_context, f"Skipping {step.key}: environment changed ({stop.message}); the next run does it."
            )
            active.mark_skipped(step.key)
        elif stop is not None:
            self.counts.not_run.setdefault(NotRunReason.ENVIRONMENT_UNAVAILABLE, set()).add(step.key)
            yield from self._fail_unstarted(
                active, step_context, step.key, f"Not run: {stop.message}", NotRunReason.ENVIRONMENT_UNAVAILABLE
            )
        else:
            self._start_thread(step, step_context, slot)
            return 1
        yield from self._after_step(active, step.key)
        return 0

    def _fail_unstarted(self, active, step_context, step_key: str, message: str, reason: NotRunReason):
        for event in adapter.step_failed(step_context, message, {NOT_RUN_REASON_KEY: reason.value}):
            yield event
            active.handle_event(event)

    def _start_thread(self, step, step_context, slot: _FrameworkSlot | None) -> None:
        self.in_flight[step.key] = step_context
        if slot is not None:
            slot.in_flight += 1
        self.retrying.discard(step.key)
        models = self.models_by_step.get(step.key, [])
        left_out = self.left_out_by_step.get(step.key, {})
        confirmed = self.ownership is not None
        self.workers.start(
            step.key,
            lambda: _run_step(step_context, step.key, self.messages, models, left_out, confirmed),
            finished=lambda: self.messages.put(_StepMessage("done", step.key)),
        )

    def _step_thread_ending(self) -> None:
        """On each step thread as the run ends: the frameworks close what it opened."""
        for slot in self.slots:
            slot.framework.thread_ending()

    def _stop_reason(self, slot: _FrameworkSlot | None) -> StopReason | None:
        """Asks the framework before its steps start, at most every poll interval."""
        if slot is None or slot.stop is not None:
            return slot.stop if slot else None
        now = time.monotonic()
        if now - slot.last_check >= ENVIRONMENT_POLL_SECONDS:
            slot.last_check = now
            slot.stop = slot.framework.stop_reason()
            if slot.stop is not None:
                self.job_context.log.warning(
                    f"{slot.stop.message}: no new model of it starts in this run; running models finish "
                    + ("and the rest are skipped for the next run." if slot.stop.expected else "and the rest fail.")
                )
        return slot.stop

    def _drain(self, active, *, block: bool) -> Iterator[adapter.DagsterEvent]:
        timeout = ENVIRONMENT_POLL_SECONDS if block else 0
        try:
            message = self.messages.get(timeout=timeout) if block else self.messages.get_nowait()
        except queue.Empty:
            return
        while True:
            yield from self._handle(active, message)
            try:
                message = self.messages.get_nowait()
            except queue.Empty:
                return

    def _handle(self, active, message: _StepMessage) -> Iterator[adapter.DagsterEvent]:
        if message.kind == "events":
            for event in message.events:
                yield from self._handle_step_event(active, message.step_key, event)
        elif message.kind == "hooks":
            yield from message.events
        elif message.kind == "crash":
            yield adapter.engine_event(
                self.in_flight.get(message.step_key, self.job_context),
                f"Step {message.step_key} crashed in the executor: {message.error}",
            )
        elif message.kind == "done":
            self._step_thread_done(message.step_key)
            active.verify_complete(self.job_context, message.step_key)
            if message.step_key not in self.retrying:
                self._finished_models.extend(self.models_by_step.get(message.step_key, []))
            yield from self._after_step(active, message.step_key)

    def _handle_step_event(self, active, step_key: str, event: Any) -> Iterator[adapter.DagsterEvent]:
        yield event
        self._release_built_node(step_key, event)
        if event.is_step_success:
            adapter.mark_unyielded_outputs_produced(active, step_key)
        active.handle_event(event)
        if event.is_step_up_for_retry:
            self.retrying.add(step_key)
        elif event.is_step_failure:
            reason = _not_run_reason(adapter.failure_metadata(event))
            if reason is not None:
                self.counts.not_run.setdefault(reason, set()).add(step_key)
            else:
                self.counts.failed.add(step_key)
        elif event.is_step_success:
            self.counts.executed.add(step_key)

    def _step_thread_done(self, step_key: str) -> None:
        step_context = self.in_flight.pop(step_key, None)
        if step_context is None:
            return
        slot = self._slot_of(step_context.step)
        if slot is not None:
            slot.in_flight -= 1

    def _after_step(self, active, step_key: str) -> Iterator[adapter.DagsterEvent]:
        """Skip and block what can no longer run, naming the reason, and free its claims."""
        abandoned_before = adapter.abandoned_step_keys(active)
        skipped_events = list(active.plan_events_iterator(self.job_context))
        for event in skipped_events:
            if event.is_step_skipped:
                self.counts.skipped_downstream.add(event.step_key)
                self._finished_models.extend(self.models_by_step.get(event.step_key, []))
            yield event
        failed = adapter.failed_step_keys(active)
        for blocked_key in sorted(adapter.abandoned_step_keys(active) - abandoned_before):
            self.counts.blocked.add(blocked_key)
            self._finished_models.extend(self.models_by_step.get(blocked_key, []))
            upstream = self._failed_upstream_models(blocked_key, failed)
            yield adapter.engine_event(
                self.job_context,
                f"Blocked {', '.join(self.models_by_step.get(blocked_key, [blocked_key]))}: "
                f"upstream {', '.join(upstream) or 'step'} failed; not executed in this run.",
                {"blocked_step": blocked_key, "failed_upstream": ", ".join(upstream)},
            )

    def _release_finished_models(self) -> None:
        """One claim-store transaction for the models finished in the last second.

        A finished model's claim only matters to a run that starts meanwhile and wants the
        same model; a second's delay costs it nothing, a transaction per model costs this
        run a commit per model. Whatever is left is released when the run ends.
        """
        now = time.monotonic()
        if self._finished_models and now - self._last_release >= RELEASE_INTERVAL_SECONDS:
            finished = list(self._finished_models)
            self._last_release = now
            from dagctl_dagster.execution.claims import ClaimStoreError

            try:
                self.store.release(self.run_id, finished)
            except ClaimStoreError as exc:  # retried next second; the leases expire meanwhile anyway
                self._release_error = self.store.describe(exc)
                return
            self._finished_models = self._finished_models[len(finished) :]
            if self.ownership is not None:
                self.ownership.released(finished)

    def _failed_upstream_models(self, step_key: str, failed: set[str]) -> list[str]:
        seen: set[str] = set()
        stack = [step_key]
        found: list[str] = []
        while stack:
            step = self.plan.get_step_by_key(stack.pop())
            for upstream_key in {k for step_input in step.step_inputs for k in step_input.dependency_keys}:
                if upstream_key in seen:
                    continue
                seen.add(upstream_key)
                if upstream_key in failed:
                    found.extend(self.models_by_step.get(upstream_key, [upstream_key]))
                else:
                    stack.append(upstream_key)
        return sorted(found)

    def _current_step_holds_claims(self) -> bool:
        """Asked by a framework before each unit of work, from the step's own thread.

        The first question of a step is answered by the confirmation the executor asked the
        store for just before it started the step's thread; every later one asks the store.
        """
        models = getattr(_step_local, "models", None)
        if self.ownership is None or models is None:
            return True
        if getattr(_step_local, "confirmed_at_start", False):
            _step_local.confirmed_at_start = False
            return True
        return self.ownership.holds(models)

    def _ownership_events(self) -> Iterator[adapter.DagsterEvent]:
        if self.ownership is None:
            return
        for report in self.ownership.reports():
            if report.lost:
                yield adapter.engine_event(
                    self.job_context,
                    f"Run {self.run_id} lost its claims on {', '.join(sorted(report.lost))}: released or "
                    "expired while this run could not renew them. No step of them starts; the run will "
                    "not be green.",
                    {"lost_claims": len(report.lost)},
                )
            if report.error:
                yield adapter.engine_event(
                    self.job_context,
                    f"Could not renew this run's claims: {report.error}. Steps start only while the claims "
                    "can be confirmed; if they cannot be renewed within the lease, they are lost.",
                    {"claim_store_error": report.error},
                )

    def _release_all(self) -> Iterator[adapter.DagsterEvent]:
        """Releases every claim of the run, after its last step thread stopped."""
        from dagctl_dagster.execution.claims import ClaimStoreError

        try:
            self.store.release(self.run_id)
        except ClaimStoreError as exc:
            yield adapter.engine_event(
                self.job_context,
                f"Could not release this run's claims: {self.store.describe(exc)}. They become free "
                f"when their lease ends ({self.store.lease_seconds:.0f}s).",
            )

    def _interrupt(self) -> Iterator[adapter.DagsterEvent]:
        for slot in self.slots:
            slot.framework.interrupt()
        running = len(self.in_flight)
        stopped = self.workers.wait(STOP_WAIT_SECONDS)
        yield from self._release_all()
        yield adapter.engine_event(
            self.job_context,
            f"Run terminated: no new step started; {running} running step(s) were asked to stop "
            + (
                "and stopped"
                if stopped
                else f"and {len(self.workers.running)} did not stop within {STOP_WAIT_SECONDS:.0f}s"
            )
            + "; claims released.",
        )
        raise adapter.DagsterExecutionInterruptedError()

    def _summary(self, duration_s: float) -> adapter.DagsterEvent:
        counts = self.counts
        summary = ExecutorSummary(
            **{  # type: ignore[arg-type]
                "duration_s": round(duration_s, 3),
                "executed": len(counts.executed),
                "failed": len(counts.failed),
                "blocked": len(counts.blocked),
                "skipped_claimed_elsewhere": len(counts.claimed_elsewhere),
                "skipped_environment_changed": len(counts.environment_changed),
                "skipped_downstream": len(counts.skipped_downstream),
                "skipped_paused": len(counts.paused),
                "models_left_out": len(counts.left_out_models),
                "not_run": sum(len(steps) for steps in counts.not_run.values()),
                **{f"not_run_{reason.value}": len(counts.not_run.get(reason, ())) for reason in NotRunReason},
            }
        )
        metadata = summary.metadata()
        return adapter.engine_event(
            self.job_context,
            f"{RUN_SUMMARY_MESSAGE}: " + ", ".join(f"{k}={v}" for k, v in metadata.items()),
            metadata,
        )


_step_local = threading.local()


def _paused_message(step_key: str, paused: list[Pause]) -> str:
    project = paused[0].project
    models = ", ".join(p.model for p in paused)
    return (
        f"Skipping {step_key}: "
        + "; ".join(f"{p.model} is {p.describe()}" for p in paused)
        + ". Its downstream steps in this run are skipped too. Resume with "
        f"`dagctl-dagster models resume --project {project} <model>` ({models})."
    )


def _not_run_reason(metadata: dict[str, Any]) -> NotRunReason | None:
    value = metadata.get(NOT_RUN_REASON_KEY)
    text = getattr(value, "value", value)
    try:
        return NotRunReason(text) if text else None
    except ValueError:
        return None


def _run_step(
    step_context,
    step_key: str,
    messages: queue.Queue,
    models: list[str],
    left_out: dict[str, str],
    confirmed_at_start: bool,
) -> None:
    """Step body, on a step thread: the step's events, then its hooks (the executor's
    ``finished`` callback reports it done).

    A one-model step reports its events together when it ends: they are already in the
    event log, and the executor has nothing to do with them earlier, so it wakes once per
    step instead of once per event. A multi-model step (a dbt build) reports each event at
    once, because each of its models' claims is released as that model finishes.

    ``confirmed_at_start``: the executor confirmed the step's claims in the store right
    before starting this step (see ``_RunExecution._current_step_holds_claims``).
    """
    _step_local.models = models
    _step_local.confirmed_at_start = confirmed_at_start
    set_left_out_models(left_out)
    report_each = len(models) > 1
    step_event_list: list[Any] = []
    reported = 0
    try:
        for event in adapter.step_events(step_context):
            step_event_list.append(event)
            if report_each:
                messages.put(_StepMessage("events", step_key, [event]))
                reported += 1
        if reported < len(step_event_list):
            messages.put(_StepMessage("events", step_key, step_event_list[reported:]))
            reported = len(step_event_list)
        hooks = list(adapter.hook_events(step_context, step_event_list, acts_only_on_failure))
        if hooks:
            messages.put(_StepMessage("hooks", step_key, hooks))
    except BaseException as exc:  # reported by the main loop; the step is then marked unknown
        if reported < len(step_event_list):
            messages.put(_StepMessage("events", step_key, step_event_list[reported:]))
        messages.put(_StepMessage("crash", step_key, error=f"{type(exc).__name__}: {exc}"))
