"""Two SQLMesh projects of one config must not share an environment of one state database.

SQLMesh keeps environments by name in its state: two projects (other than the repositories of
one multi-repository layout, which are one SQLMesh project) whose gateways keep state in the
same database and schema, planning the same environment, replace each other's environment on
every plan, and each run then finds the other project's models. The config is refused with
one line naming both projects and what to change.
"""

from __future__ import annotations

from dagctl_dagster.config import ConfigError, LoadedConfig, ProjectConfig
from dagctl_dagster.sqlmesh import FRAMEWORK, internals
from dagctl_dagster.sqlmesh.context import multi_repository_group

DEFAULT_STATE_SCHEMA = "sqlmesh"

StateKey = tuple[str, str | None, int | None, str | None, str, str]


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
    project_dir = loaded.project_dir(project)
    try:
        config = next(iter(internals.load_project_configs([project_dir], working_dir=project_dir).values()))
        state = internals.state_connection(config, project.gateway)
    except Exception:  # the project's own load names the problem
        return None
    return (
        state.backend,
        state.host,
        state.port,
        state.database,
        state.schema or DEFAULT_STATE_SCHEMA,
        project.environment,
    )


def _describe(key: StateKey) -> str:
    backend, host, port, database, schema, _ = key
    where = f"{host}:{port}/{database}" if host else str(database)
    return f"{backend} {where}, schema {schema}"
