"""What SQLMesh's console reports while a plan applies, handed to this project's recorders."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class PlanBatch:
    """One batch a plan evaluated (and completed), as SQLMesh's console reports it."""

    snapshot_name: str
    interval: tuple[int, int]
    interval_count: int  # the node's intervals (days, hours, ...) the batch covers
    audits_failed: int
    duration_s: float  # the evaluation's wall time, SQLMesh's own measure
    rows_processed: int | None  # what SQLMesh's execution tracker counted; None where the engine reports none


EvaluationRecorder = Callable[[PlanBatch], None]
# (snapshot name, its error's reason in one line)
FailureRecorder = Callable[[str, str], None]


@contextlib.contextmanager
def recording_evaluations(
    evaluations: EvaluationRecorder | None, failures: FailureRecorder | None = None
) -> Iterator[None]:
    """Reports each batch SQLMesh evaluates (and completes) meanwhile to ``evaluations``, and
    each model that failed to ``failures``; a no-op unless the quiet console is installed."""
    from sqlmesh.core.console import get_console

    from dagctl_dagster.sqlmesh.internals.console import DagctlConsole

    console = get_console()
    if not isinstance(console, DagctlConsole) or (evaluations is None and failures is None):
        yield
        return
    console.recorder = evaluations
    console.failure_recorder = failures
    try:
        yield
    finally:
        console.recorder = None
        console.failure_recorder = None
