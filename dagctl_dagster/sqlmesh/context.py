"""Where a configured SQLMesh project loads from, and opening its Context as `sqlmesh` would.

`sqlmesh` runs in a project's directory, so relative paths in its config (``database:
db.duckdb``) resolve there. A multi-repository layout (each repository's config names a
``project:``; `sqlmesh -p repo_1 -p repo_2` from their parent directory) loads every
repository into one Context: configured projects whose SQLMesh configs name a ``project:``
form one such group, loaded together, with their common parent as working directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dagctl_dagster.config import LoadedConfig, ProjectConfig
from dagctl_dagster.errors import ProjectLoadError
from dagctl_dagster.sqlmesh import FRAMEWORK

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SQLMeshLocation:
    """The directories one SQLMesh Context loads, and which configured project owns which.

    ``owners`` maps a SQLMesh ``project:`` name ('' for a single-directory project) to the
    configured project whose assets its models are.
    """

    project: str
    paths: tuple[Path, ...]
    working_dir: Path
    gateway: str | None
    owners: tuple[tuple[str, str], ...]

    @property
    def is_group(self) -> bool:
        return len(self.paths) > 1

    def owner_of(self, sqlmesh_project: str) -> str:
        return dict(self.owners).get(sqlmesh_project or "", self.project)


def single_location(project_dir: Path, project: ProjectConfig) -> SQLMeshLocation:
    return SQLMeshLocation(
        project=project.name,
        paths=(project_dir,),
        working_dir=project_dir,
        gateway=project.gateway,
        owners=(("", project.name),),
    )


def sqlmesh_location(loaded: LoadedConfig, project: ProjectConfig) -> SQLMeshLocation:
    """The project's location: alone, or with every configured project of its multi-repo group."""
    project_dir = loaded.project_dir(project)
    own_name = _sqlmesh_project_name(loaded, project)
    if not own_name:
        return single_location(project_dir, project)
    members: list[tuple[Path, str, str]] = []
    for other in loaded.projects:
        if other.framework != FRAMEWORK:
            continue
        other_dir = loaded.project_dir(other)
        other_name = own_name if other is project else _sqlmesh_project_name(loaded, other)
        if other_name:
            members.append((other_dir, other_name, other.name))
    paths = tuple(path for path, _, _ in members)
    return SQLMeshLocation(
        project=project.name,
        paths=paths,
        working_dir=Path(os.path.commonpath([str(p) for p in paths])) if len(paths) > 1 else project_dir,
        gateway=project.gateway,
        owners=tuple((sqlmesh_name, owner) for _, sqlmesh_name, owner in members),
    )


def multi_repository_group(loaded: LoadedConfig) -> frozenset[str]:
    """The configured SQLMesh projects whose repositories name a SQLMesh ``project:``: they load
    into one Context together (:func:`sqlmesh_location`)."""
    return frozenset(p.name for p in loaded.projects if p.framework == FRAMEWORK and _sqlmesh_project_name(loaded, p))


def _sqlmesh_project_name(loaded: LoadedConfig, project: ProjectConfig) -> str:
    from dagctl_dagster.sqlmesh.config_facts import loaded_config_facts

    return loaded_config_facts(loaded, project).sqlmesh_project


def project_load_error(project: str, exc: BaseException) -> ProjectLoadError:
    """The project's load error for what SQLMesh raised: one line, and the file where known."""
    return ProjectLoadError(project, _one_line(exc), _file_of(exc))


def load_context(location: SQLMeshLocation, *, load: bool = True) -> Any:
    """A SQLMesh ``Context`` on the location. Close it (or use :func:`open_context`) when done.

    The project's Python files import the project's own modules, whatever other projects
    this process loaded (:mod:`dagctl_dagster.sqlmesh.imports`); so does :func:`reload_project`.

    Raises:
        ProjectLoadError: naming the project and, where SQLMesh says it, the file.
    """
    from sqlmesh import Context

    from dagctl_dagster.sqlmesh.imports import own_modules
    from dagctl_dagster.sqlmesh.internals import install_quiet_console, load_project_configs

    install_quiet_console()
    try:
        configs = load_project_configs(location.paths, location.working_dir)
        with own_modules(location.paths):
            context = Context(paths=list(configs), config=configs, gateway=location.gateway, load=load)
    except Exception as exc:  # SQLMesh surfaces parse errors from sqlglot and Python errors from config.py
        raise project_load_error(location.project, exc) from None
    try:
        _claim_materializations(location)
    except ProjectLoadError:
        context.close()
        raise
    return context


def reload_project(context: Any, location: SQLMeshLocation) -> None:
    """``context.load()`` of a context from :func:`load_context`, with the project's own modules."""
    from dagctl_dagster.sqlmesh.imports import own_modules
    from dagctl_dagster.sqlmesh.internals import load_models

    with own_modules(location.paths):
        load_models(context)
    _claim_materializations(location)


def load_materializations(context: Any, location: SQLMeshLocation) -> None:
    """What ``sqlmesh run`` imports of an unloaded context: its custom materializations."""
    from dagctl_dagster.sqlmesh.imports import own_modules
    from dagctl_dagster.sqlmesh.internals import load_custom_materializations

    with own_modules(location.paths):
        load_custom_materializations(context)
    _claim_materializations(location)


def _claim_materializations(location: SQLMeshLocation) -> None:
    from dagctl_dagster.sqlmesh.materializations import claim_materializations

    claim_materializations(location.project, location.paths)


@contextlib.contextmanager
def open_context(loaded: LoadedConfig, project: ProjectConfig) -> Iterator[Any]:
    """``with open_context(loaded, project) as context:`` — closed on exit, whatever happens.

    Closing matters: DuckDB lets one process hold a database file at a time, and a Context
    keeps its warehouse and state connections open until closed.
    """
    context = load_context(sqlmesh_location(loaded, project))
    try:
        yield context
    finally:
        context.close()


def _file_of(exc: BaseException) -> Path | None:
    from dagctl_dagster.sqlmesh.internals import error_file

    return error_file(exc)


def _one_line(exc: BaseException) -> str:
    from dagctl_dagster.sqlmesh.internals import is_sqlmesh_error

    text = " ".join(str(exc).split())
    return text if is_sqlmesh_error(exc) else f"{type(exc).__name__}: {text}"
