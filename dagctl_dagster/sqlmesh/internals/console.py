"""A quiet SQLMesh console: SQLMesh's progress bars and prompts have no place in a run worker.

It forwards warnings and errors to Python logging and, while a plan applies inside a run,
tells the run which batches the plan evaluated (:func:`~.recording.recording_evaluations`).
This module subclasses SQLMesh's console, so it imports SQLMesh: import it only where a
Context is being opened.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlmesh.core.console import NoopConsole

from dagctl_dagster.sqlmesh.internals.recording import EvaluationRecorder, FailureRecorder, PlanBatch
from dagctl_dagster.sqlmesh.internals.scheduling import interval_count

if TYPE_CHECKING:
    from sqlmesh.core.snapshot import Snapshot, SnapshotId
    from sqlmesh.core.snapshot.definition import Interval
    from sqlmesh.core.snapshot.execution_tracker import QueryExecutionStats
    from sqlmesh.utils.concurrency import NodeExecutionFailedError

logger = logging.getLogger("dagctl_dagster.sqlmesh")


class DagctlConsole(NoopConsole):
    """Forwards SQLMesh's warnings and errors to Python logging; drops progress output."""

    recorder: EvaluationRecorder | None = None
    failure_recorder: FailureRecorder | None = None

    def log_warning(self, short_message: str, long_message: str | None = None) -> None:
        logger.warning(long_message or short_message)

    def log_error(self, message: str) -> None:
        logger.error(message)

    def update_snapshot_evaluation_progress(
        self,
        snapshot: Snapshot,
        interval: Interval,
        batch_idx: int,
        duration_ms: int | None,
        num_audits_passed: int,
        num_audits_failed: int,
        audit_only: bool = False,
        execution_stats: QueryExecutionStats | None = None,
        auto_restatement_triggers: list[SnapshotId] | None = None,
    ) -> None:
        if self.recorder is not None and duration_ms is not None and not audit_only:
            batch = (int(interval[0]), int(interval[1]))
            self.recorder(
                PlanBatch(
                    snapshot_name=snapshot.name,
                    interval=batch,
                    interval_count=interval_count(snapshot, batch),
                    audits_failed=num_audits_failed,
                    duration_s=duration_ms / 1000,
                    rows_processed=execution_stats.total_rows_processed if execution_stats is not None else None,
                )
            )

    def log_failed_models(self, errors: list[NodeExecutionFailedError]) -> None:
        for error in errors:
            node = getattr(error, "node", None)
            name = getattr(node, "snapshot_name", None)
            cause = error.__cause__ or error
            if name and self.failure_recorder is not None:
                self.failure_recorder(name, " ".join(str(cause).split()) or type(cause).__name__)
