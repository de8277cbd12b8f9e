"""`load_definitions()`: a `.dagctl/config.yaml` becomes a `dg.Definitions`."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from dagctl_dagster.config import LoadedConfig, default_config_path, load_config
from dagctl_dagster.names import PROJECT_TAG
from dagctl_dagster.project import CodeLocationContext, ProjectDefinitions
from dagctl_dagster.run_identity import JobKind, job_name

__all__ = ["definitions_attribute", "load_definitions"]

# The attribute of a `definitions.py` that serves every project as one code location.
ALL_PROJECTS_ATTRIBUTE = "defs"


def load_definitions(
    config_path: str | Path | None = None, *, location: str | None = None, projects: Sequence[str] | None = None
) -> dg.Definitions:
    """Build the code location for the projects of a `.dagctl/config.yaml`: all of them, or
    one location's of several (:mod:`dagctl_dagster.locations`).

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
        location: serve only the projects of this location (a project's ``location:``,
            else its name).
        projects: serve only these projects.
    """
    from dagctl_dagster.locations import LocationSelection, select_projects

    _configure_process_before_load()
    selection = LocationSelection(location, frozenset(projects) if projects is not None else None)
    everything = load_config(config_path or default_config_path())
    _check_projects(everything)
    loaded = select_projects(everything, selection)
    built = _build_projects(loaded, _ModelsOfOtherLocations(everything, loaded))
    _refuse_shared_keys(loaded, built)
    _declare_shared_sources_once(built)
    models_by_op = {op: model for p in built for op, model in p.models_by_op.items()}
    _configure_process_after_load(models_by_op)
    return _assemble(CodeLocationContext(loaded=loaded, projects=built, selection=selection), models_by_op)


def definitions_attribute(config_path: str | Path, name: str) -> dg.Definitions:
    """For a ``definitions.py``'s module ``__getattr__``: ``defs`` serves every project of the
    config, a location's name (``attribute:`` of a workspace entry that ``dagctl-dagster
    workspace`` writes) serves that location's projects. Each is built once per process,
    when Dagster asks for it, so a broken project fails only the locations that serve it.

    Example (``definitions.py``)::

        def __getattr__(name):
            return definitions_attribute(".dagctl/config.yaml", name)

        def __dir__():  # what Dagster finds without an attribute: every project in one location
            return ["defs"]

    Raises:
        AttributeError: ``name`` is neither ``defs`` nor a location of the config.
    """
    from dagctl_dagster.locations import locations

    path = Path(config_path).resolve()
    if name == ALL_PROJECTS_ATTRIBUTE:
        return _cached_definitions(path, None)
    if name.startswith("__") or name not in locations(load_config(path, check_paths=False).config):
        raise AttributeError(name)
    return _cached_definitions(path, name)


@functools.cache
def _cached_definitions(config_path: Path, location: str | None) -> dg.Definitions:
    return load_definitions(config_path, location=location)


def _assemble(code_location: CodeLocationContext, models_by_op: dict[str, str]) -> dg.Definitions:
    from dagctl_dagster.alerts import build_alerting
    from dagctl_dagster.automation import build_automation
    from dagctl_dagster.execution.executor import claim_aware_executor
    from dagctl_dagster.execution.pausing import build_pause_job
    from dagctl_dagster.k8s.revision import code_revision_tags
    from dagctl_dagster.logging import json_console_logger, json_logs_enabled

    alerting = build_alerting(code_location)
    automation = build_automation(code_location)
    revision_tags = code_revision_tags(code_location.loaded.root)
    assets: list = []
    jobs: list = [build_pause_job(code_location.loaded)]
    resources: dict[str, object] = {}
    for project_defs in code_location.projects:
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
    - Dagster's PostgreSQL instances create runs on one connection, if this process has a
      PostgreSQL instance (:func:`~dagctl_dagster.execution.dagster_adapter.pool_postgres_event_connections_while_creating_runs`);
    - after the projects are built (:func:`_configure_process_after_load`): the JSON log
      handler a ``dagster.yaml`` may name (``python_logs``) learns which model each op runs.
    """
    from dagctl_dagster.execution.dagster_adapter import (
        keep_sqlite_event_connections_open,
        pool_postgres_event_connections_while_creating_runs,
    )
    from dagctl_dagster.quiet import print_expected_errors_without_traceback, silence_known_warnings

    silence_known_warnings()
    print_expected_errors_without_traceback()
    keep_sqlite_event_connections_open()
    pool_postgres_event_connections_while_creating_runs()


def _configure_process_after_load(models_by_op: dict[str, str]) -> None:
    """See :func:`_configure_process_before_load`."""
    from dagctl_dagster.logging import register_models

    register_models(models_by_op)


def _build_projects(loaded: LoadedConfig, elsewhere: _ModelsOfOtherLocations) -> list[ProjectDefinitions]:
    """Projects in their plugins' build order, each seeing the model keys of the projects built
    before it (a dbt source reading a SQLMesh model becomes an edge to that model's asset),
    here or in another location (``elsewhere``); the result keeps the config's order."""
    from functools import partial

    from dagctl_dagster.frameworks import UpstreamModels, plugin_for

    built: dict[str, ProjectDefinitions] = {}
    upstream_keys: list[dg.AssetKey] = []
    for order in sorted({plugin_for(p.framework).build_order for p in loaded.projects}):
        upstream = UpstreamModels(list(upstream_keys), partial(elsewhere.before, order))
        built_now = [
            plugin_for(p.framework).build_project(loaded, p, upstream)
            for p in loaded.projects
            if plugin_for(p.framework).build_order == order
        ]
        for project_defs in built_now:
            built[project_defs.name] = project_defs
            upstream_keys.extend(project_defs.model_keys)
    return [built[p.name] for p in loaded.projects]


def _check_projects(loaded: LoadedConfig) -> None:
    """What no plugin can tell from one project alone (e.g. two projects sharing SQLMesh state)."""
    from dagctl_dagster.frameworks import plugin_for

    for framework in dict.fromkeys(p.framework for p in loaded.projects):
        plugin_for(framework).check_projects(loaded)


class _ModelsOfOtherLocations:
    """Model keys of the projects other code locations of the config serve, read once, on the
    first question, through their plugins (a SQLMesh project's from its translation cache).

    A project that does not load there is left out: its own location shows the error, and
    this one loads without the lineage to it.
    """

    def __init__(self, everything: LoadedConfig, loaded: LoadedConfig):
        self._everything = everything
        self._served = {p.name for p in loaded.projects}
        self._keys: dict[int, list[dg.AssetKey]] | None = None

    def before(self, order: int) -> list[dg.AssetKey]:
        """Keys of the other locations' projects built before ``order``."""
        if self._keys is None:
            self._keys = self._read()
        return [key for earlier, keys in self._keys.items() if earlier < order for key in keys]

    def _read(self) -> dict[int, list[dg.AssetKey]]:
        import logging

        from dagctl_dagster.errors import ProjectLoadError
        from dagctl_dagster.frameworks import plugin_for

        keys: dict[int, list[dg.AssetKey]] = {}
        for project in self._everything.projects:
            if project.name in self._served:
                continue
            plugin = plugin_for(project.framework)
            try:
                keys.setdefault(plugin.build_order, []).extend(plugin.model_keys(self._everything, project))
            except ProjectLoadError as exc:
                logging.getLogger(__name__).warning("no lineage to project '%s': %s", project.name, exc)
        return keys


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


def _declare_shared_sources_once(projects: list[ProjectDefinitions]) -> None:
    """A table several projects read is one asset: teams commonly declare the same source
    (``raw.customers``) as an external model each. The first declaration stays; a declaration
    of another project's model gives way to that model's asset."""
    model_owner = {key: project_defs.name for project_defs in projects for key in project_defs.model_keys}
    declared: set[dg.AssetKey] = set()
    for project_defs in projects:
        kept: list[dg.AssetsDefinition | dg.AssetSpec] = []
        for asset in project_defs.assets:
            if isinstance(asset, dg.AssetSpec):
                if asset.key in declared or model_owner.get(asset.key, project_defs.name) != project_defs.name:
                    continue
                declared.add(asset.key)
            kept.append(asset)
        project_defs.assets = kept
