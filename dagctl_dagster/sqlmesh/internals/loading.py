"""Opening a project as ``sqlmesh`` does: the quiet console, materializations, a full load."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlmesh import Context


def install_quiet_console() -> None:
    """Makes the quiet console (:class:`~.console.DagctlConsole`) the console of the Contexts
    opened from now on (``Context(...)`` takes SQLMesh's global console)."""
    from sqlmesh.core.console import set_console

    from dagctl_dagster.sqlmesh.internals.console import DagctlConsole

    set_console(DagctlConsole())


def load_custom_materializations(context: Context) -> None:
    """What ``Context.run`` does before scheduling: register the project's materializations."""
    context._load_materializations()


def custom_materializations() -> list[tuple[str, type]]:
    """Each custom materialization class the process holds, with the name models give it:
    SQLMesh's ``get_custom_materialization_type`` looks among these classes."""
    from sqlmesh import CustomMaterialization

    return [
        (getattr(strategy_type, "NAME", strategy_type.__name__).lower(), strategy_type)
        for strategy_type in CustomMaterialization.__subclasses__()
    ]


def load_models(context: Context) -> None:
    """Loads every model of a Context opened with ``load=False`` (what a plan needs)."""
    context.load()
