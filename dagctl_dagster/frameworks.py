"""Frameworks are plugins: what a SQLMesh or dbt project contributes to a code location.

Each framework implements :class:`FrameworkPlugin` once (``sqlmesh/plugin.py``,
``dbt/plugin.py``). Everything else (definitions, automation, alerts, pausing, the config's
cross-field rules) asks :func:`plugin_for` and never compares a framework's name, so a third
framework is one new plugin registered in :data:`_PLUGINS`.

Example::

    plugin = plugin_for(project.framework)
    project_defs = plugin.build_project(loaded, project, upstream_keys=[])
    plugin.model_key(project, "demo.orders")   # "demo/orders"

Plugin modules import their engine (SQLMesh, dbt) only inside methods: the config loader
and the Kubernetes launcher ask plugins about config fields without loading an engine.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    import logging

    import dagster as dg

    from dagctl_dagster.config import LoadedConfig, ProjectConfig
    from dagctl_dagster.project import ProjectDefinitions

__all__ = ["Deploy", "FrameworkPlugin", "all_plugins", "plugin_for"]


@dataclass(frozen=True)
class Deploy:
    """A new config version the deploy sensor is rolling out: what each plugin's request needs."""

    loaded: LoadedConfig
    base_commit: str | None  # the commit deployed last (None: unknown, deploy everything)
    commit: str | None  # the commit being deployed
    log: logging.Logger | dg.DagsterLogManager

    @property
    def version(self) -> str:
        return self.loaded.version

    def tags(self, project: ProjectConfig) -> dict[str, str]:
        """The tags every deploy run of ``project`` carries (the plugin adds its scope)."""
        from dagctl_dagster.names import DEPLOY_COMMIT_TAG, DEPLOY_VERSION_TAG, FRAMEWORK_TAG, PROJECT_TAG

        tags = {PROJECT_TAG: project.name, FRAMEWORK_TAG: project.framework, DEPLOY_VERSION_TAG: self.version}
        if self.commit:
            tags[DEPLOY_COMMIT_TAG] = self.commit
        return tags

    def run_key(self, project: ProjectConfig) -> str:
        from dagctl_dagster.run_identity import deploy_run_key

        return deploy_run_key(project, self.version)


class FrameworkPlugin(abc.ABC):
    """One framework: its config rules, what a project contributes, its deploys and model names."""

    # The value of a project's ``framework:`` field.
    name: ClassVar[str]
    # Projects of a lower build order are built first; later projects' assets may read their
    # models (a dbt source that is a SQLMesh model becomes an edge to that model's asset).
    build_order: ClassVar[int]
    # The run schedule of a project that sets no ``schedule:`` (None: runs only on request).
    default_schedule: ClassVar[str | None]

    @abc.abstractmethod
    def check_config(self, project: ProjectConfig) -> None:
        """Refuse fields of another framework with a ``ValueError`` naming the field to use."""

    @abc.abstractmethod
    def build_project(
        self, loaded: LoadedConfig, project: ProjectConfig, upstream_keys: Sequence[dg.AssetKey]
    ) -> ProjectDefinitions:
        """Everything the project contributes: assets, checks, resources, maintenance and deploy
        jobs with their schedules, its freshness source. ``upstream_keys``: models of projects
        built before it (lower build order) that its assets may read."""

    def model_keys(self, loaded: LoadedConfig, project: ProjectConfig) -> list[dg.AssetKey]:
        """The keys of the models ``project`` builds, for a project of another code location that
        reads them (lineage across locations by asset key). Raises what a load of the project
        raises."""
        return self.build_project(loaded, project, []).model_keys

    @abc.abstractmethod
    def deploy_request(self, project: ProjectConfig, deploy: Deploy) -> dg.RunRequest | None:
        """The run that deploys ``project`` at a new config version; None when nothing changed."""

    # Why :meth:`inseparable` groups must share a location (for the error that names them).
    inseparable_reason: ClassVar[str] = ""

    def check_projects(self, loaded: LoadedConfig) -> None:
        """Refuse, with a ``ConfigError``, projects of this framework that cannot work side by side
        in one deployment (whatever code locations serve them)."""
        return None

    def inseparable(self, loaded: LoadedConfig) -> list[frozenset[str]]:
        """Groups of this framework's projects that only load together (one code location)."""
        return []

    @abc.abstractmethod
    def model_key(self, project: ProjectConfig, model: str) -> str:
        """The asset key (``a/b``) of the model a user names (``pause``/``resume``), as the
        framework's translator keys it. Raises ``ValueError`` for a name it cannot be."""


# framework name -> "module:class"; imported on first use.
_PLUGINS: dict[str, str] = {
    "sqlmesh": "dagctl_dagster.sqlmesh.plugin:SQLMeshPlugin",
    "dbt": "dagctl_dagster.dbt.plugin:DbtPlugin",
}
_loaded: dict[str, FrameworkPlugin] = {}


def plugin_for(framework: str) -> FrameworkPlugin:
    """The plugin of a framework name from the config (validated against :data:`_PLUGINS`)."""
    plugin = _loaded.get(framework)
    if plugin is None:
        module_name, class_name = _PLUGINS[framework].split(":")
        plugin = getattr(importlib.import_module(module_name), class_name)()
        _loaded[framework] = plugin
    return plugin


def all_plugins() -> list[FrameworkPlugin]:
    return [plugin_for(name) for name in _PLUGINS]


def framework_names() -> tuple[str, ...]:
    return tuple(_PLUGINS)
