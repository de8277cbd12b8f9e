"""This code location as a Dagster component, for projects made with ``dg``.

``defs/dagctl/defs.yaml`` in a ``dg`` project::

    type: dagctl_dagster.DagctlComponent
    attributes:
      config_path: ../../../../.dagctl/config.yaml   # relative to this defs.yaml's folder

``dg check defs`` validates it; ``dg dev`` and ``dg launch --job <project>_run`` serve and run
it, exactly as ``load_definitions(config_path)`` does in a ``definitions.py``.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field


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
