"""One config served as several code locations: one per project, or per named ``location:``.

Dagster isolates code locations: one that fails to load shows its own load error, and every
other location's schedules, sensors and runs go on. Served as one location (``defs =
load_definitions(config)``) a broken project stops them all; served as several, it stops only
its own location. A project's location is its ``location:`` field, else its own name.

Example (``definitions.py`` beside the config; what ``dagctl-dagster workspace`` writes
entries for)::

    defs = load_definitions(".dagctl/config.yaml")                       # everything, one location
    defs = load_definitions(".dagctl/config.yaml", location="marketing")  # one location of several

Projects that must share a location (a SQLMesh multi-repository group; a run across SQLMesh
and dbt models) say so through their plugins (:meth:`FrameworkPlugin.inseparable`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dagctl_dagster.config import ConfigError, DagctlConfig, LoadedConfig, ProjectConfig

__all__ = ["LocationSelection", "location_of", "locations", "select_projects", "workspace_yaml"]


def location_of(project: ProjectConfig) -> str:
    return project.location or project.name


def locations(config: DagctlConfig) -> dict[str, list[str]]:
    """Location name → the names of its projects, in the config's order."""
    found: dict[str, list[str]] = {}
    for project in config.projects:
        found.setdefault(location_of(project), []).append(project.name)
    return found


@dataclass(frozen=True)
class LocationSelection:
    """Which projects of a config one code location serves: all, one location's, or a list."""

    location: str | None = None
    projects: frozenset[str] | None = None

    def serves(self, project: ProjectConfig) -> bool:
        if self.projects is not None:
            return project.name in self.projects
        if self.location is not None:
            return location_of(project) == self.location
        return True

    @property
    def is_everything(self) -> bool:
        return self.location is None and self.projects is None


def select_projects(loaded: LoadedConfig, selection: LocationSelection) -> LoadedConfig:
    """The config as one location sees it: only the projects it serves.

    Raises:
        ConfigError: a name that is no project or location of the config, or a location that
            would split projects that must be served together.
    """
    if selection.is_everything:
        return loaded
    _refuse_unknown_names(loaded, selection)
    served = [p for p in loaded.projects if selection.serves(p)]
    _refuse_split_groups(loaded, {p.name for p in served})
    return LoadedConfig(loaded.path, loaded.config.model_copy(update={"projects": served}))


def _refuse_unknown_names(loaded: LoadedConfig, selection: LocationSelection) -> None:
    names = {p.name for p in loaded.projects}
    if selection.projects is not None:
        unknown = sorted(selection.projects - names)
        if unknown or not selection.projects:
            raise ConfigError(
                loaded.path,
                f"no project named {', '.join(repr(n) for n in unknown) or '(none given)'}; "
                f"the projects are {', '.join(sorted(names))}",
                field="projects",
            )
    if selection.location is not None and selection.location not in locations(loaded.config):
        raise ConfigError(
            loaded.path,
            f"no code location named '{selection.location}'; the locations are "
            f"{', '.join(locations(loaded.config))} (a project's `location:`, else its name)",
            field="location",
        )


def _refuse_split_groups(loaded: LoadedConfig, served: set[str]) -> None:
    from dagctl_dagster.frameworks import all_plugins

    for plugin in all_plugins():
        for group in plugin.inseparable(loaded):
            if served & group and not group <= served:
                raise ConfigError(
                    loaded.path,
                    f"projects {', '.join(sorted(group))} must be served by one code location "
                    f"({plugin.name}: {plugin.inseparable_reason}); give them the same `location:`",
                    field="location",
                )


def workspace_yaml(loaded: LoadedConfig, definitions_file: Path, workspace_dir: Path) -> str:
    """A ``workspace.yaml`` with one entry per location, each serving ``definitions_file``'s
    ``<location>`` attribute (see the repository's ``definitions.py``)."""
    import os

    import yaml

    relative = os.path.relpath(definitions_file.resolve(), workspace_dir.resolve())
    entries = [
        {"python_file": {"relative_path": relative, "attribute": name, "location_name": name}}
        for name in locations(loaded.config)
    ]
    header = f"# One code location per project or `location:` of {loaded.path.name} (dagctl-dagster workspace).\n"
    return header + yaml.safe_dump({"load_from": entries}, sort_keys=False)


def helm_user_deployments(loaded: LoadedConfig, template: dict) -> dict:
    """A values override for the official Dagster chart: the one user-code deployment of
    ``template`` (a values file's ``dagster-user-deployments.deployments[0]``) repeated per
    location, each code server serving its location's attribute of the same definitions file."""
    import copy

    deployments = []
    for name in locations(loaded.config):
        deployment = copy.deepcopy(template)
        deployment["name"] = name.replace("_", "-").lower()
        deployment["codeServerArgs"] = [*_without_attribute(template.get("codeServerArgs", [])), "--attribute", name]
        deployments.append(deployment)
    return {"dagster-user-deployments": {"enabled": True, "deployments": deployments}}


def _without_attribute(args: Sequence[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("--attribute", "-a"):
            skip = True
        else:
            kept.append(arg)
    return kept


def served_names(selection: LocationSelection, loaded: LoadedConfig) -> Sequence[str]:
    return [p.name for p in loaded.projects if selection.serves(p)]
