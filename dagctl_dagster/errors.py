"""Errors that name the project and file a user must fix."""

from __future__ import annotations

from pathlib import Path


class ProjectLoadError(Exception):
    """A project listed in the config could not be turned into assets.

    The message names the project, the file (when known) and the cause.
    """

    def __init__(self, project: str, message: str, file: Path | str | None = None):
        self.project = project
        self.file = Path(file) if file else None
        where = f"project '{project}'" + (f", file {self.file}" if self.file else "")
        super().__init__(f"{where}: {message}")
