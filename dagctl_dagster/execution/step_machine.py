"""The run's steps from ready to settled: started on step threads within the limits, or
settled without running (skipped or failed, naming why), and what follows from each outcome.

A ready step starts at once while fewer than ``max_concurrent`` steps run and its framework
has room (a gateway with one connection runs one model at a time). A step that cannot run
settles instead, in this order: a paused model skips it; a model held by another live run
skips it; a claim this run lost fails it (not run: ``claim_lost``); an environment re-planned
under the run skips it, one that vanished fails it. When a step fails, Dagster abandons its
downstream: each is reported as blocked, naming the failed upstream models. Everything that
settles is counted in the run's :class:`~dagctl_dagster.execution.tally.Tally` and its
models' claims are released.
"""

from __future__ import annotations

import queue
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING

import dagster as dg

from dagctl_dagster.execution import dagster_adapter as adapter
from dagctl_dagster.execution.framework import Refusal, StepGrant
from dagctl_dagster.execution.not_run import NotRun, NotRunLedger
from dagctl_dagster.execution.run_claims import RunClaims
from dagctl_dagster.execution.run_frameworks import ENVIRONMENT_POLL_SECONDS, FrameworkSlot, RunFrameworks
from dagctl_dagster.execution.step_body import StepCrashed, StepDone, StepEvents, StepHooks, StepMessage, run_step
from dagctl_dagster.execution.step_workers import StepWorkers
from dagctl_dagster.execution.tally import Tally
from dagctl_dagster.names import FAILED_MODELS_KEY, SKIPPED_MODELS_KEY, NotRunReason, model_names

if TYPE_CHECKING:
    from dagctl_dagster.execution.pauses import Pause


class StepMachine:
    """The run's ready, running and retrying steps (see the module docstring)."""

    def __init__(
        self,
        plan: adapter.PlanRun,
        max_concurrent: int,
        claims: RunClaims,
        frameworks: RunFrameworks,
        tally: Tally,
        not_run: NotRunLedger,
    ) -> None:
        self._plan = plan
        self._not_run = not_run
        self._max_concurrent = max_concurrent
        self._claims = claims
        self._frameworks = frameworks
        self._tally = tally
        self._messages: queue.Queue[StepMessage] = queue.Queue()
        self._in_flight: dict[str, adapter.StepExecutionContext] = {}
        self._slot_of_running: dict[str, FrameworkSlot] = {}
        self._ready: list[adapter.ExecutionStep] = []
        self._retrying: set[str] = set()
        self._uses_pools = bool(plan.pools())
        self.workers = StepWorkers(on_thread_end=frameworks.thread_ending)

    @property
    def running(self) -> int:
        """Steps started whose thread has not said done yet."""
        return len(self._in_flight)

    @property
    def busy(self) -> bool:
        return bool(self._in_flight or self._ready)

    # -- starting ------------------------------------------------------------------------

    def launch_ready(self) -> Generator[adapter.DagsterEvent, None, int]:
        """Starts or settles every ready step there is room for; returns how many started."""
        self._ready.extend(self._plan.ready_steps(self._room_for_pool_steps()))
        launched = 0
        waiting: list[adapter.ExecutionStep] = []
        for step in self._ready:
            slot = self._frameworks.slot_of(step)
            if len(self._in_flight) >= self._max_concurrent or (slot is not None and not slot.has_room()):
                waiting.append(step)
                continue
            launched += yield from self._start_or_settle(step, slot)
        self._ready = waiting
        return launched

    def _room_for_pool_steps(self) -> int | None:
        """How many more ready steps to take while pools are in use: a step handed out holds a
        pool slot, which must not sit idle while this run has no room to start it."""
        if not self._uses_pools:
            return None
        return self._max_concurrent - len(self._in_flight) - len(self._ready)

    def _start_or_settle(
        self, step: adapter.ExecutionStep, slot: FrameworkSlot | None
    ) -> Generator[adapter.DagsterEvent, None, int]:
        """Starts the step, or records why it does not run (skipped or failed with a reason)."""
        step_context = self._plan.step_context(step)
        key = step.key
        self._tally.left_out_models.update((yield from self._claims.narrow(key)))
        holders = self._claims.holders_in(key)
        paused = self._claims.paused_in(key)
        if paused:
            self._tally.paused.add(key)
            yield from self._skip(step_context, key, _paused_message(key, paused))
        elif holders:
            self._tally.claimed_elsewhere.add(key)
            names = ", ".join(f"{model} is claimed by run {run_id}" for model, run_id in holders.items())
            yield from self._skip(
                step_context,
                key,
                f"Skipping {key}: {names}. Its downstream steps in this run are skipped "
                "too; the next run does what is still due.",
            )
        elif not self._claims.still_holds(key):
            lost = ", ".join(self._claims.models_of(key) or [key])
            yield from self._fail_unstarted(
                step_context,
                key,
                f"Not run: this run no longer holds the claim on {lost} (released, or its lease expired "
                "while the run could not renew it); another run may be evaluating it.",
                NotRunReason.CLAIM_LOST,
            )
        elif (stop := self._frameworks.stop_reason(slot)) is not None and stop.expected:
            self._tally.environment_changed.add(key)
            yield from self._skip(
                step_context, key, f"Skipping {key}: environment changed ({stop.message}); the next run does it."
            )
        elif stop is not None:
            yield from self._fail_unstarted(
                step_context, key, f"Not run: {stop.message}", NotRunReason.ENVIRONMENT_UNAVAILABLE
            )
        elif (refusal := self._frameworks.refusal(slot, key)) is not None:
            yield from self._refuse(step_context, key, refusal)
        else:
            self._start(step_context, key, slot)
            return 1
        yield from self._after_step()
        return 0

    def _skip(
        self, step_context: adapter.StepExecutionContext, step_key: str, message: str
    ) -> Iterator[adapter.DagsterEvent]:
        yield from adapter.step_skipped(step_context, message)
        self._plan.mark_skipped(step_key)

    def _refuse(
        self, step_context: adapter.StepExecutionContext, step_key: str, refusal: Refusal
    ) -> Iterator[adapter.DagsterEvent]:
        """A step its framework refused: failed (downstream blocked), or skipped with its
        downstream still asked in turn. Either way it is counted as not run, with its reason."""
        not_run = refusal.not_run
        if not refusal.downstream_asked:
            yield from self._fail_unstarted(step_context, step_key, not_run.message, not_run.reason)
            return
        self._not_run.record(step_key, not_run)
        self._tally.not_run_step(step_key, not_run.reason)
        self._claims.finished(step_key)
        yield from self._skip(step_context, step_key, not_run.message)
        self._plan.mark_unyielded_outputs_produced(step_key)

    def _fail_unstarted(
        self, step_context: adapter.StepExecutionContext, step_key: str, message: str, reason: NotRunReason
    ) -> Iterator[adapter.DagsterEvent]:
        not_run = NotRun(reason, message)
        self._not_run.record(step_key, not_run)
        self._tally.not_run_step(step_key, reason)
        for event in adapter.step_failed(step_context, message, not_run.shown()):
            yield event
            self._plan.handle_event(event)

    def _start(self, step_context: adapter.StepExecutionContext, step_key: str, slot: FrameworkSlot | None) -> None:
        self._in_flight[step_key] = step_context
        self._retrying.discard(step_key)
        self._not_run.forget(step_key)
        if slot is not None:
            grant = StepGrant(
                step_key,
                self._not_run,
                left_out=self._claims.left_out_of(step_key),
                holds_claims=self._claims.check_for(step_key),
            )
            slot.start(grant)
            self._slot_of_running[step_key] = slot
        report_each = self._claims.is_multi_model(step_key)
        self.workers.start(
            step_key,
            lambda: run_step(step_context, self._messages, report_each=report_each),
            finished=lambda: self._messages.put(StepDone(step_key)),
        )

    # -- what the step threads report ----------------------------------------------------

    def drain(self, *, block: bool) -> Iterator[adapter.DagsterEvent]:
        """Handles the step threads' messages; waits a poll interval for the first one when
        ``block`` (steps are running and there is nothing else to do)."""
        try:
            message = self._messages.get(timeout=ENVIRONMENT_POLL_SECONDS) if block else self._messages.get_nowait()
        except queue.Empty:
            return
        while True:
            yield from self._handle(message)
            try:
                message = self._messages.get_nowait()
            except queue.Empty:
                return

    def _handle(self, message: StepMessage) -> Iterator[adapter.DagsterEvent]:
        if isinstance(message, StepEvents):
            for event in message.events:
                yield from self._handle_step_event(message.step_key, event)
        elif isinstance(message, StepHooks):
            yield from message.events
        elif isinstance(message, StepCrashed):
            context = self._in_flight.get(message.step_key)
            yield adapter.engine_event(
                context or self._plan.job_context,
                f"Step {message.step_key} crashed in the executor: {message.error}",
            )
        else:
            self._step_thread_done(message.step_key)
            self._plan.verify_complete(message.step_key)
            if message.step_key not in self._retrying:
                self._claims.finished(message.step_key)
            yield from self._after_step()

    def _handle_step_event(self, step_key: str, event: adapter.DagsterEvent) -> Iterator[adapter.DagsterEvent]:
        yield event
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION and event.asset_key is not None:
            model = event.asset_key.to_user_string()
            self._tally.materialized(step_key, model, event.materialization.metadata)
            if self._claims.is_multi_model(step_key):
                self._claims.node_finished(step_key, model)
        if event.is_step_success:
            self._plan.mark_unyielded_outputs_produced(step_key)
        self._plan.handle_event(event)
        if event.is_step_up_for_retry:
            self._retrying.add(step_key)
        elif event.is_step_failure:
            not_run = self._not_run.of(step_key)
            if not_run is not None:
                self._tally.not_run_step(step_key, not_run.reason)
            else:
                self._tally.failed.add(step_key)
                self._record_failed_models(step_key, event)
        elif event.is_step_success:
            self._tally.executed.add(step_key)

    def _record_failed_models(self, step_key: str, event: adapter.DagsterEvent) -> None:
        """A multi-model step's failure names its failed and skipped models (dbt's node results)."""
        data = event.step_failure_data.user_failure_data if event.step_failure_data else None
        metadata = data.metadata if data is not None else {}
        if FAILED_MODELS_KEY in metadata:
            self._tally.failed_step(
                step_key, model_names(metadata[FAILED_MODELS_KEY]), model_names(metadata.get(SKIPPED_MODELS_KEY))
            )

    def _step_thread_done(self, step_key: str) -> None:
        if self._in_flight.pop(step_key, None) is None:
            return
        slot = self._slot_of_running.pop(step_key, None)
        if slot is not None:
            slot.finished()

    # -- what follows from an outcome ----------------------------------------------------

    def _after_step(self) -> Iterator[adapter.DagsterEvent]:
        """Skip and block what can no longer run, naming the reason, and free its claims."""
        abandoned_before = self._plan.abandoned_step_keys()
        for event in list(self._plan.plan_events()):
            if event.is_step_skipped and event.step_key is not None:
                self._tally.skipped_downstream.add(event.step_key)
                self._claims.finished(event.step_key)
            yield event
        failed = self._plan.failed_step_keys()
        for blocked_key in sorted(self._plan.abandoned_step_keys() - abandoned_before):
            self._tally.blocked.add(blocked_key)
            self._claims.finished(blocked_key)
            upstream = self._failed_upstream_models(blocked_key, failed)
            yield adapter.engine_event(
                self._plan.job_context,
                f"Blocked {', '.join(self._claims.models_of(blocked_key) or [blocked_key])}: "
                f"{self._upstream_outcome(upstream)}; not executed in this run.",
                {"blocked_step": blocked_key, "failed_upstream": ", ".join(m for m, _ in upstream)},
            )

    def _failed_upstream_models(self, step_key: str, failed: set[str]) -> list[tuple[str, NotRun | None]]:
        """The models of the failed steps upstream, each with why it did not run when it did not
        fail itself (a not-run step also fails, so that the run is not green)."""
        seen: set[str] = set()
        stack = [step_key]
        found: list[tuple[str, NotRun | None]] = []
        while stack:
            for upstream_key in self._plan.upstream_step_keys(stack.pop()):
                if upstream_key in seen:
                    continue
                seen.add(upstream_key)
                if upstream_key in failed:
                    not_run = self._not_run.of(upstream_key)
                    found.extend((m, not_run) for m in self._claims.models_of(upstream_key) or [upstream_key])
                else:
                    stack.append(upstream_key)
        return sorted(found, key=lambda item: item[0])

    @staticmethod
    def _upstream_outcome(upstream: list[tuple[str, NotRun | None]]) -> str:
        """``upstream a/b failed``; a model that was not run is named as such, never as failed."""
        failed = [model for model, not_run in upstream if not_run is None]
        not_run = [f"{model} ({why.reason.value})" for model, why in upstream if why is not None]
        parts = [f"upstream {', '.join(failed) or 'step'} failed"] if failed or not not_run else []
        if not_run:
            parts.append(f"upstream {', '.join(not_run)} not run")
        return "; ".join(parts)


def _paused_message(step_key: str, paused: list[Pause]) -> str:
    project = paused[0].project
    models = ", ".join(p.model for p in paused)
    return (
        f"Skipping {step_key}: "
        + "; ".join(f"{p.model} is {p.describe()}" for p in paused)
        + ". Its downstream steps in this run are skipped too. Resume with "
        f"`dagctl-dagster models resume --project {project} <model>` ({models})."
    )
