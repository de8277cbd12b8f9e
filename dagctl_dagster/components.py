"""This code location as a Dagster component, for projects made with ``dg``.

In a project made by ``create-dagster project`` (or ``dg scaffold project``)::

    dg scaffold defs dagctl_dagster.DagctlComponent dagctl --config-path .dagctl/config.yaml

writes ``defs/dagctl/defs.yaml``::

    type: dagctl_dagster.DagctlComponent
    attributes:
      config_path: '{{ context.project_root }}/.dagctl/config.yaml'

``config_path`` may also be relative to the folder of the defs.yaml. ``dg check defs``
validates it; ``dg dev`` and ``dg launch --job <project>_run`` serve and run it, exactly as
``load_definitions(config_path)`` does in a ``definitions.py``.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from dagster.components.component_scaffolding import scaffold_component
from pydantic import BaseModel, Field

PROJECT_ROOT_TEMPLATE = "{{ context.project_root }}"


class DagctlScaffoldParams(BaseModel):
    config_path: str = Field(
        default=".dagctl/config.yaml",
        description="The .dagctl/config.yaml to serve, relative to the dg project's root (or absolute).",
    )


class DagctlScaffolder(dg.Scaffolder[DagctlScaffoldParams]):
    """``dg scaffold defs dagctl_dagster.DagctlComponent NAME [--config-path PATH]``."""

    @classmethod
    def get_scaffold_params(cls) -> type[DagctlScaffoldParams]:
        return DagctlScaffoldParams

    def scaffold(self, request: dg.ScaffoldRequest[DagctlScaffoldParams]) -> None:
        path = request.params.config_path
        if not Path(path).is_absolute():
            path = f"{PROJECT_ROOT_TEMPLATE}/{path}"
        scaffold_component(request, {"config_path": path})


@dg.scaffold_with(DagctlScaffolder)
class DagctlComponent(dg.Component, dg.Model, dg.Resolvable):
    """Every SQLMesh and dbt project of a ``.dagctl/config.yaml``, with its jobs, schedules,
    sensors, alerts and the claim-aware executor."""

    config_path: str = Field(
        description="The .dagctl/config.yaml to serve; a relative path starts at the folder of this defs.yaml."
    )
    location: str | None = Field(
        default=None,
        description="Serve only this code location's projects (a project's `location:`, else its name); "
        "default: every project.",
    )

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        from dagctl_dagster.definitions import load_definitions

        return load_definitions(self.resolved_config_path(context.path), location=self.location)

    def resolved_config_path(self, defs_folder: Path) -> Path:
        path = Path(self.config_path).expanduser()
        return path if path.is_absolute() else (defs_folder / path).resolve()
