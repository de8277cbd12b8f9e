"""A quiet SQLMesh console: SQLMesh's progress bars and prompts have no place in a run worker.

It forwards warnings and errors to Python logging and, while a plan applies inside a run,
tells the run which batches the plan evaluated (:func:`recording_evaluations`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from sqlmesh.core.console import NoopConsole, get_console

logger = logging.getLogger("dagctl_dagster.sqlmesh")

# (snapshot name, batch start/end, intervals in the batch, audits failed)
EvaluationRecorder = Callable[[str, tuple[int, int], int, int], None]


class DagctlConsole(NoopConsole):
    """Forwards SQLMesh's warnings and errors to Python logging; drops progress output."""

    recorder: EvaluationRecorder | None = None
    failure_recorder: Callable[[str, str], None] | None = None

    def log_warning(self, short_message: str, long_message: str | None = None) -> None:
        logger.warning(long_message or short_message)

    def log_error(self, message: str) -> None:
        logger.error(message)

    def update_snapshot_evaluation_progress(
        self,
        snapshot: Any,
        interval: Any,
        batch_idx: int,
        duration_ms: int | None,
        num_audits_passed: int,
        num_audits_failed: int,
        audit_only: bool = False,
        execution_stats: Any = None,
        auto_restatement_triggers: Any = None,
    ) -> None:
        if self.recorder is not None and duration_ms is not None and not audit_only:
            from dagctl_dagster.sqlmesh.internals import interval_count

            batch = (int(interval[0]), int(interval[1]))
            self.recorder(snapshot.name, batch, interval_count(snapshot, batch), num_audits_failed)

    def log_failed_models(self, errors: list[Any]) -> None:
        for error in errors:
            node = getattr(error, "node", None)
            name = getattr(node, "snapshot_name", None)
            cause = error.__cause__ or error
            if name and self.failure_recorder is not None:
                self.failure_recorder(name, " ".join(str(cause).split()) or type(cause).__name__)


@contextlib.contextmanager
def recording_evaluations(
    recorder: EvaluationRecorder, failure_recorder: Callable[[str, str], None] | None = None
) -> Iterator[None]:
    """Reports each batch SQLMesh evaluates (and completes) meanwhile to ``recorder``, and
    each model that failed (snapshot name, its error's first line) to ``failure_recorder``."""
    console = get_console()
    if not isinstance(console, DagctlConsole):
        yield
        return
    console.recorder = recorder
    console.failure_recorder = failure_recorder
    try:
        yield
    finally:
        console.recorder = None
        console.failure_recorder = None
