"""Opening a SQLMesh Context for a configured project, with errors that name the project."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

from dagctl_dagster.config import LoadedConfig, ProjectConfig
from dagctl_dagster.errors import ProjectLoadError

logger = logging.getLogger(__name__)


def load_context(project_dir: Path, project: ProjectConfig, *, load: bool = True):
    """A SQLMesh ``Context`` on the project. Close it (or use :func:`open_context`) when done.

    Raises:
        ProjectLoadError: naming the project and, where SQLMesh says it, the file.
    """
    from sqlmesh import Context
    from sqlmesh.core.console import set_console
    from sqlmesh.utils.errors import SQLMeshError

    from dagctl_dagster.sqlmesh.console import DagctlConsole

    set_console(DagctlConsole())
    try:
        return Context(paths=[str(project_dir)], gateway=project.gateway, load=load)
    except SQLMeshError as exc:
        raise ProjectLoadError(project.name, _first_line_with_file(exc), _file_of(exc)) from exc
    except Exception as exc:  # SQLMesh surfaces parse errors from sqlglot and Python errors from config.py
        raise ProjectLoadError(project.name, f"{type(exc).__name__}: {exc}", _file_of(exc)) from exc


@contextlib.contextmanager
def open_context(loaded: LoadedConfig, project: ProjectConfig) -> Iterator:
    """``with open_context(loaded, project) as context:`` — closed on exit, whatever happens.

    Closing matters: DuckDB lets one process hold a database file at a time, and a Context
    keeps its warehouse and state connections open until closed.
    """
    context = load_context(loaded.project_dir(project), project)
    try:
        yield context
    finally:
        context.close()


def _file_of(exc: BaseException) -> Path | None:
    for candidate in (exc, exc.__cause__, exc.__context__):
        path = getattr(candidate, "path", None) or getattr(candidate, "_path", None)
        if path:
            return Path(path)
    return None


def _first_line_with_file(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if len(text.splitlines()) == 1 else " ".join(text.split())
