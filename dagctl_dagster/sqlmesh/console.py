"""A quiet SQLMesh console: SQLMesh's progress bars and prompts have no place in a run worker."""

from __future__ import annotations

import logging

from sqlmesh.core.console import NoopConsole

logger = logging.getLogger("dagctl_dagster.sqlmesh")

_INITIAL_PLAN_SKIP_BACKFILL_WARNING = "Skipping the backfill stage for production"


class DagctlConsole(NoopConsole):
    """Forwards SQLMesh's warnings and errors to Python logging; drops progress output."""

    def log_warning(self, short_message: str, long_message: str | None = None) -> None:
        if short_message.startswith(_INITIAL_PLAN_SKIP_BACKFILL_WARNING):
            # The run's initial plan skips the backfill on purpose: the model steps that
            # follow evaluate every due interval.
            return
        logger.warning(long_message or short_message)

    def log_error(self, message: str) -> None:
        logger.error(message)
