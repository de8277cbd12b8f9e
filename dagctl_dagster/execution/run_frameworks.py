"""The framework sessions of one run (SQLMesh, dbt), as the executor drives them.

The executor finds the run's sessions among its resources by type
(:class:`~dagctl_dagster.execution.framework.RunFramework`) and keeps one
:class:`FrameworkSlot` per session: its preparation (a limit on concurrent steps, or an
error), how many of its steps run now, and whether its environment still lets steps start.
A step belongs to the session that serves its project (the step's project tag).

Example::

    frameworks = RunFrameworks.of_run(plan)
    yield from frameworks.prepare(stop_the_run, claims.models_of, claims.paused_of_projects)
    slot = frameworks.slot_of(step)
    if slot is None or slot.has_room(): ...
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field

from dagctl_dagster.execution import dagster_adapter as adapter
from dagctl_dagster.execution.framework import (
    Preparation,
    Refusal,
    RunFramework,
    RunSetup,
    RunStep,
    StepGrant,
    StopReason,
)
from dagctl_dagster.names import PROJECT_TAG

ENVIRONMENT_POLL_SECONDS = 0.5
# How long a stopping run waits for what runs (a preparation, its steps) before it reports and releases claims.
STOP_WAIT_SECONDS = 15.0


@dataclass
class FrameworkSlot:
    """A framework session of this run, its preparation and how many of its steps run now."""

    framework: RunFramework
    preparation: Preparation = field(default_factory=Preparation)
    in_flight: int = 0
    stop: StopReason | None = None
    last_check: float = 0.0

    @property
    def limit(self) -> int | None:
        return self.preparation.concurrency_limit

    def has_room(self) -> bool:
        return self.limit is None or self.in_flight < self.limit

    def start(self, grant: StepGrant) -> None:
        """One of its steps starts now, with ``grant``."""
        self.in_flight += 1
        self.framework.start_step(grant)

    def finished(self) -> None:
        self.in_flight -= 1


class RunFrameworks:
    """Every framework session of the run, by the projects they serve."""

    def __init__(self, plan: adapter.PlanRun, frameworks: list[RunFramework], max_concurrent: int) -> None:
        self._plan = plan
        self._max_concurrent = max_concurrent
        self.slots = [FrameworkSlot(framework) for framework in frameworks]
        self._slot_by_project = {project: slot for slot in self.slots for project in slot.framework.projects}

    @classmethod
    def of_run(cls, plan: adapter.PlanRun, max_concurrent: int) -> RunFrameworks:
        """The sessions serving a step of this run. A session a step only reads from (the
        freshness checks of a run that executes no model) is not prepared: preparing applies
        a first plan and runs ``before_all``, which only model steps call for."""
        served = {adapter.step_tags(step).get(PROJECT_TAG, "") for step in plan.steps_in_order()}
        resources = adapter.resource_instances(plan.job_context)
        frameworks = [r for r in resources if isinstance(r, RunFramework) and r.projects & served]
        return cls(plan, frameworks, max_concurrent)

    def slot_of(self, step: adapter.ExecutionStep) -> FrameworkSlot | None:
        return self._slot_by_project.get(adapter.step_tags(step).get(PROJECT_TAG, ""))

    # -- before any step -----------------------------------------------------------------

    def prepare(
        self,
        interrupt: Callable[[bool], Iterator[adapter.DagsterEvent]],
        models_of: Callable[[str], list[str]],
        paused_of: Callable[[frozenset[str]], Mapping[str, str]],
    ) -> Iterator[adapter.DagsterEvent]:
        """Each framework gets ready (first plan, due intervals) before any of its steps starts,
        told its steps (``models_of`` a step key) and its projects' paused models (``paused_of``).

        Preparation runs on a helper thread so that a termination is still noticed meanwhile;
        ``interrupt`` then stops the run (it raises).
        """
        yield from self._enter_working_dir()
        for slot in self.slots:
            steps = tuple(
                RunStep(step.key, dict(adapter.step_tags(step)), tuple(models_of(step.key)))
                for step in self._plan.steps_in_order()
                if self.slot_of(step) is slot
            )
            setup = RunSetup(
                should_stop=lambda: False,
                max_concurrent=self._max_concurrent,
                steps=steps,
                paused=paused_of(slot.framework.projects),
            )
            slot.preparation = yield from self._prepare_one(slot.framework, setup, interrupt)
            for note in slot.preparation.notes:
                yield adapter.engine_event(self._plan.job_context, note)
            if slot.preparation.limit_reason and (slot.limit or 0) < self._max_concurrent:
                self._plan.log.warning(slot.preparation.limit_reason)
            if slot.preparation.error:
                yield adapter.engine_event(self._plan.job_context, slot.preparation.error, error=False)

    def _enter_working_dir(self) -> Iterator[adapter.DagsterEvent]:
        """The run worker's one process-wide side effect, on purpose: project code that opens
        files by relative path (a query's `read_csv('data/x.csv')`, a Python model's
        `open(...)`) finds them as when `sqlmesh` runs in the project's directory. Runs
        spanning projects with different directories stay where they are, and say so."""
        directories = {s.framework.working_dir for s in self.slots if s.framework.working_dir is not None}
        if len(directories) == 1:
            directory = directories.pop()
            os.chdir(directory)
            yield adapter.engine_event(self._plan.job_context, f"Working directory of this run: {directory}")
        elif directories:
            yield adapter.engine_event(
                self._plan.job_context,
                "This run spans projects in different directories: relative file paths in project code "
                f"resolve against {os.getcwd()}, not each project's own directory.",
            )

    def _prepare_one(
        self, framework: RunFramework, setup: RunSetup, interrupt: Callable[[bool], Iterator[adapter.DagsterEvent]]
    ) -> Generator[adapter.DagsterEvent, None, Preparation]:
        outcome: list[Preparation] = []
        interrupted = threading.Event()
        setup = dataclasses.replace(setup, should_stop=interrupted.is_set)
        worker = threading.Thread(
            target=lambda: outcome.append(framework.prepare(setup)),
            name="dagctl-prepare",
            daemon=True,
        )
        worker.start()
        while worker.is_alive():
            worker.join(ENVIRONMENT_POLL_SECONDS)
            if self._plan.interrupt_requested():
                interrupted.set()
                framework.interrupt()
                worker.join(STOP_WAIT_SECONDS)
                self._plan.mark_interrupted()
                yield from interrupt(not worker.is_alive())
        return outcome[0] if outcome else Preparation(error="framework preparation ended without an outcome")

    # -- while steps run -----------------------------------------------------------------

    def stop_reason(self, slot: FrameworkSlot | None) -> StopReason | None:
        """Asks the framework before its steps start, at most every poll interval."""
        if slot is None or slot.stop is not None:
            return slot.stop if slot else None
        now = time.monotonic()
        if now - slot.last_check >= ENVIRONMENT_POLL_SECONDS:
            slot.last_check = now
            slot.stop = slot.framework.stop_reason()
            if slot.stop is not None:
                self._plan.log.warning(
                    f"{slot.stop.message}: no new model of it starts in this run; running models finish "
                    + ("and the rest are skipped for the next run." if slot.stop.expected else "and the rest fail.")
                )
        return slot.stop

    def refusal(self, slot: FrameworkSlot | None, step_key: str) -> Refusal | None:
        """Asks the step's framework whether the step may start."""
        return slot.framework.refusal(step_key) if slot is not None else None

    def interrupt(self) -> None:
        for slot in self.slots:
            slot.framework.interrupt()

    def thread_ending(self) -> None:
        """On each step thread as the run ends: the frameworks close what it opened."""
        for slot in self.slots:
            slot.framework.thread_ending()
