"""`load_definitions()`: a `.dagctl/config.yaml` becomes a `dg.Definitions`."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from dagctl_dagster.config import LoadedConfig, ProjectConfig, default_config_path, load_config
from dagctl_dagster.names import PROJECT_TAG
from dagctl_dagster.project import CodeLocationContext, ProjectDefinitions
from dagctl_dagster.run_identity import JobKind, job_name

__all__ = ["build_project", "load_definitions"]


def load_definitions(config_path: str | Path | None = None) -> dg.Definitions:
    """Build the code location for every project in a `.dagctl/config.yaml`.

    Each project contributes one asset per model (with checks), a `<project>_run` job
    selecting all its models, and its schedules; the claim-aware executor is the default
    executor of every job. Either the whole code location loads or a
    :class:`~dagctl_dagster.ConfigError` / :class:`~dagctl_dagster.ProjectLoadError`
    names the file and what to fix; nothing is half-built.

    Example (``definitions.py``)::

        from dagctl_dagster import load_definitions

        defs = load_definitions(".dagctl/config.yaml")

    Args:
        config_path: the config file; defaults to ``$DAGCTL_CONFIG`` or
            ``.dagctl/config.yaml`` in the working directory.
    """
    _configure_process_before_load()
    loaded = load_config(config_path or default_config_path())
    projects = _build_projects(loaded)
    _refuse_shared_keys(loaded, projects)
    location = CodeLocationContext(loaded=loaded, projects=projects)
    models_by_op = {op: model for p in projects for op, model in p.models_by_op.items()}
    _configure_process_after_load(models_by_op)

    from dagctl_dagster.alerts import build_alerting
    from dagctl_dagster.automation import build_automation
    from dagctl_dagster.execution.executor import claim_aware_executor
    from dagctl_dagster.logging import json_console_logger, json_logs_enabled

    alerting = build_alerting(location)
    automation = build_automation(location)

    from dagctl_dagster.execution.pausing import build_pause_job
    from dagctl_dagster.k8s.revision import code_revision_tags

    revision_tags = code_revision_tags(loaded.root)
    assets: list = []
    jobs: list = [build_pause_job(loaded)]
    resources: dict[str, object] = {}
    for project_defs in projects:
        assets.extend(project_defs.assets)
        jobs.append(
            dg.define_asset_job(
                job_name(project_defs.project, JobKind.RUN),
                selection=project_defs.run_selection - dg.AssetSelection.checks(*alerting.freshness_checks),
                description=f"Runs every model of {project_defs.project.framework} project "
                f"'{project_defs.name}' that is due.",
                tags={PROJECT_TAG: project_defs.name, **revision_tags},
                hooks=alerting.step_hooks_for(project_defs.project),
            )
        )
        resources.update(project_defs.resources)

    return dg.Definitions.merge(
        dg.Definitions(
            assets=assets,
            jobs=jobs,
            resources=resources,
            executor=claim_aware_executor,
            loggers={"console": json_console_logger(models_by_op)} if json_logs_enabled() else None,
        ),
        automation.definitions,
        alerting.definitions,
    )


def _configure_process_before_load() -> None:
    """Loading a code location changes this process in exactly these ways, on purpose:

    - before the config is read: warnings with nothing for the user to do are silenced, and
      a config or project error that ends the process (``dagster job execute``, ``dg
      launch``) prints one line instead of a traceback (:mod:`dagctl_dagster.quiet`);
    - Dagster's SQLite event log storage keeps its connections open, if this process has a
      SQLite instance (:func:`~dagctl_dagster.execution.dagster_adapter.keep_sqlite_event_connections_open`):
      ``dagster job execute`` creates its run right after this load, one event per asset;
    - after the projects are built (:func:`_configure_process_after_load`): the JSON log
      handler a ``dagster.yaml`` may name (``python_logs``) learns which model each op runs.
    """
    from dagctl_dagster.execution.dagster_adapter import keep_sqlite_event_connections_open
    from dagctl_dagster.quiet import print_expected_errors_without_traceback, silence_known_warnings

    silence_known_warnings()
    print_expected_errors_without_traceback()
    keep_sqlite_event_connections_open()


def _configure_process_after_load(models_by_op: dict[str, str]) -> None:
    """See :func:`_configure_process_before_load`."""
    from dagctl_dagster.logging import register_models

    register_models(models_by_op)


def build_project(
    loaded: LoadedConfig, project: ProjectConfig, upstream_keys: list[dg.AssetKey] | None = None
) -> ProjectDefinitions:
    if project.framework == "sqlmesh":
        from dagctl_dagster.sqlmesh.asset_factory import build_sqlmesh_project

        return build_sqlmesh_project(loaded, project)
    from dagctl_dagster.dbt.asset_factory import build_dbt_project

    return build_dbt_project(loaded, project, upstream_keys or [])


def _build_projects(loaded: LoadedConfig) -> list[ProjectDefinitions]:
    """SQLMesh projects first, so that a dbt source reading a SQLMesh model becomes an edge to
    that model's asset; the result keeps the config's order."""
    built = {p.name: build_project(loaded, p) for p in loaded.projects if p.framework == "sqlmesh"}
    sqlmesh_keys = [key for project_defs in built.values() for key in project_defs.model_keys]
    for project in loaded.projects:
        if project.framework == "dbt":
            built[project.name] = build_project(loaded, project, sqlmesh_keys)
    return [built[p.name] for p in loaded.projects]


def _refuse_shared_keys(loaded: LoadedConfig, projects: list[ProjectDefinitions]) -> None:
    """Two projects producing one asset key would stop the code location from loading."""
    from dagctl_dagster.config import ConfigError

    owner: dict[dg.AssetKey, str] = {}
    for project_defs in projects:
        for key in project_defs.model_keys:
            other = owner.setdefault(key, project_defs.name)
            if other != project_defs.name:
                raise ConfigError(
                    loaded.path,
                    f"projects '{other}' and '{project_defs.name}' both define the model with asset key "
                    f"'{key.to_user_string()}'. If they are repositories of one SQLMesh multi-repository "
                    "layout, give each repository's SQLMesh config a `project:` name so they load "
                    "together; otherwise rename one of the models.",
                    field="projects",
                )
