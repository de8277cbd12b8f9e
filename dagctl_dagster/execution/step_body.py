"""What runs on a step thread: the step's events, then its hooks, reported to the run's loop.

The loop owns Dagster's plan state; a step thread only produces events (Dagster writes each
to the event log as it is created) and puts them on the loop's queue as messages. The
thread's ``finished`` callback (see :class:`~dagctl_dagster.execution.step_workers.StepWorkers`)
then puts :class:`StepDone`.

A one-model step reports its events together when it ends: they are already in the event
log, and the loop has nothing to do with them earlier, so it wakes once per step instead of
once per event. A multi-model step (a dbt build) reports each event at once, because each
of its models' claims is released as that model finishes.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass

from dagctl_dagster.execution import dagster_adapter as adapter
from dagctl_dagster.names import acts_only_on_failure


@dataclass(frozen=True)
class StepEvents:
    step_key: str
    events: list[adapter.DagsterEvent]


@dataclass(frozen=True)
class StepHooks:
    step_key: str
    events: list[adapter.DagsterEvent]


@dataclass(frozen=True)
class StepCrashed:
    """The step body raised out of Dagster's own error handling (a bug, not a model failure)."""

    step_key: str
    error: str


@dataclass(frozen=True)
class StepDone:
    step_key: str


StepMessage = StepEvents | StepHooks | StepCrashed | StepDone


def run_step(
    step_context: adapter.StepExecutionContext, messages: queue.Queue[StepMessage], *, report_each: bool
) -> None:
    """The step's events, then its hooks, as messages on ``messages``; never raises."""
    step_key = adapter.step_key_of(step_context)
    step_event_list: list[adapter.DagsterEvent] = []
    reported = 0
    try:
        for event in adapter.step_events(step_context):
            step_event_list.append(event)
            if report_each:
                messages.put(StepEvents(step_key, [event]))
                reported += 1
        if reported < len(step_event_list):
            messages.put(StepEvents(step_key, step_event_list[reported:]))
            reported = len(step_event_list)
        hooks = list(adapter.hook_events(step_context, step_event_list, acts_only_on_failure))
        if hooks:
            messages.put(StepHooks(step_key, hooks))
    except BaseException as exc:  # reported by the loop; the step is then marked unknown
        if reported < len(step_event_list):
            messages.put(StepEvents(step_key, step_event_list[reported:]))
        messages.put(StepCrashed(step_key, f"{type(exc).__name__}: {exc}"))
