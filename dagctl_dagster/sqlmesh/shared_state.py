"""Two SQLMesh projects of one config must not share an environment of one state database.

SQLMesh keeps environments by name in its state: two projects (other than the repositories of
one multi-repository layout, which are one SQLMesh project) whose gateways keep state in the
same database and schema, planning the same environment, replace each other's environment on
every plan, and each run then finds the other project's models. The config is refused with
one line naming both projects and what to change.

What each project's config says is read through :mod:`.config_facts`, so a load whose
projects did not change does not import SQLMesh.
"""

from __future__ import annotations

from dataclasses import dataclass

from dagctl_dagster.config import ConfigError, LoadedConfig, ProjectConfig
from dagctl_dagster.errors import ProjectLoadError
from dagctl_dagster.sqlmesh import FRAMEWORK
from dagctl_dagster.sqlmesh.config_facts import StateLocation, loaded_config_facts
from dagctl_dagster.sqlmesh.context import multi_repository_group

DEFAULT_STATE_SCHEMA = "sqlmesh"


@dataclass(frozen=True)
class StateKey:
    """One environment of one state: what two projects must not share."""

    backend: str
    host: str | None
    port: int | None
    database: str | None
    schema: str
    environment: str


def refuse_shared_environments(loaded: LoadedConfig) -> None:
    """Raises :class:`ConfigError` when two SQLMesh projects would plan one environment of one state."""
    group = multi_repository_group(loaded)
    owner: dict[StateKey, str] = {}
    for project in loaded.projects:
        if project.framework != FRAMEWORK or (project.name in group and project.name != min(group)):
            continue
        key = _state_key(loaded, project)
        if key is None:
            continue  # its config does not load: building the project reports why
        other = owner.setdefault(key, project.name)
        if other != project.name:
            raise ConfigError(
                loaded.path,
                f"SQLMesh projects '{other}' and '{project.name}' keep their state in the same database and "
                f"schema ({_describe(key)}) and both plan environment '{project.environment}': each plan would "
                "replace the other's environment. Give one of them its own `state_schema` in its gateway "
                "(SQLMesh config), or its own `environment` here.",
                field="projects",
            )


def _state_key(loaded: LoadedConfig, project: ProjectConfig) -> StateKey | None:
    try:
        state: StateLocation | None = loaded_config_facts(loaded, project).state
    except ProjectLoadError:  # the project's own load names the problem
        return None
    if state is None:
        return None
    return StateKey(
        backend=state.backend,
        host=state.host,
        port=state.port,
        database=state.database,
        schema=state.schema or DEFAULT_STATE_SCHEMA,
        environment=project.environment,
    )


def _describe(key: StateKey) -> str:
    where = f"{key.host}:{key.port}/{key.database}" if key.host else str(key.database)
    return f"{key.backend} {where}, schema {key.schema}"
