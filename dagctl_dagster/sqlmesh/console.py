"""A quiet SQLMesh console: SQLMesh's progress bars and prompts have no place in a run worker."""

from __future__ import annotations

import logging

from sqlmesh.core.console import NoopConsole

logger = logging.getLogger("dagctl_dagster.sqlmesh")


class DagctlConsole(NoopConsole):
    """Forwards SQLMesh's warnings and errors to Python logging; drops progress output."""

    def log_warning(self, short_message: str, long_message: str | None = None) -> None:
        logger.warning(long_message or short_message)

    def log_error(self, message: str) -> None:
        logger.error(message)
