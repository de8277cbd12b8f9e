"""dagctl-dagster: run SQLMesh and dbt projects in production on Dagster.

Public API (everything else may move)::

    from dagctl_dagster import load_definitions
    defs = load_definitions(".dagctl/config.yaml")

or, in a ``dg`` project, a ``defs.yaml`` declaring ``type: dagctl_dagster.DagctlComponent``
(registered for ``dg`` through the ``dagster_dg_cli.registry_modules`` entry point).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Imported on first use so that `import dagctl_dagster` stays cheap (run workers,
# the CLI, the Kubernetes launcher in the daemon) and one area's heavy imports
# do not load with another's.
_PUBLIC = {
    "load_definitions": "dagctl_dagster.definitions",
    "definitions_attribute": "dagctl_dagster.definitions",
    "load_config": "dagctl_dagster.config",
    "ConfigError": "dagctl_dagster.config",
    "ProjectLoadError": "dagctl_dagster.errors",
    "sqlmesh_assets": "dagctl_dagster.sqlmesh.asset_factory",
    "DagsterSQLMeshTranslator": "dagctl_dagster.sqlmesh.translator",
    "dbt_assets": "dagctl_dagster.dbt.asset_factory",
    "claim_aware_executor": "dagctl_dagster.execution.executor",
    "ClaimStore": "dagctl_dagster.execution.claims",
    "DagctlK8sRunLauncher": "dagctl_dagster.k8s.launcher",
    "DagctlComponent": "dagctl_dagster.components",
}

# Public names that need an extra (dagctl_dagster/extras.py); without it they are left out
# of dir(), which dg walks (importing every name) when it lists components.
_EXTRA_OF = {"dbt_assets": "dbt", "DagctlK8sRunLauncher": "k8s"}

__all__ = sorted(_PUBLIC)

if TYPE_CHECKING:  # pragma: no cover
    from dagctl_dagster.config import ConfigError as ConfigError
    from dagctl_dagster.config import load_config as load_config
    from dagctl_dagster.definitions import load_definitions as load_definitions
    from dagctl_dagster.errors import ProjectLoadError as ProjectLoadError


def __getattr__(name: str) -> Any:
    module_path = _PUBLIC.get(name)
    if module_path is None:
        raise AttributeError(f"module 'dagctl_dagster' has no attribute '{name}'")
    return getattr(importlib.import_module(module_path), name)


def __dir__() -> list[str]:
    # dg lists a registry module's components by dir(); the public names load on access.
    from dagctl_dagster.extras import EXTRA_MODULES, is_installed

    usable = {name for name in _PUBLIC if name not in _EXTRA_OF or is_installed(EXTRA_MODULES[_EXTRA_OF[name]])}
    return sorted(set(globals()) | usable)
