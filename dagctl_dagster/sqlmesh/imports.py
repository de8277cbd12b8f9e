"""A SQLMesh project's own top-level Python modules while it loads, and no other project's.

SQLMesh imports a project's Python files (``macros/``, ``models/``, ``signals/``,
``materializations/``, ``config.py``) as top-level modules, with the project directory put
first on ``sys.path`` for the duration of the load; before importing a file it drops from
``sys.modules`` only that file's own module hierarchy (``macros``, ``macros.scaling``).
Whatever those files import from the project (a ``helpers`` package, a ``helper.py``) stays in
``sys.modules``, so the next project of the process that imports a module of the same name
gets the first project's. The load is where it matters: SQLMesh then serializes what a model
uses into the model's ``python_env`` (the project's functions as source, its constants as
values, code from outside the project directory as an import statement), and evaluation
executes that ``python_env`` without importing the project's modules.

So each load of a project runs with the modules of the project's top-level names that come
from elsewhere taken out of ``sys.modules`` (the project imports its own), and afterwards the
process gets back the modules it had under those names. Loads are serialized process-wide: SQLMesh's registries of
macros, signals and Python models are process-global too, and threads of one process (a
run's preparation, sensors of a code server) may each load a project.

The modules a load imported are kept referenced afterwards, out of ``sys.modules``: SQLMesh
finds custom materializations among ``CustomMaterialization.__subclasses__()``, which holds
its classes weakly (see :mod:`dagctl_dagster.sqlmesh.materializations`).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

_LOAD_LOCK = threading.RLock()
# The modules each project (by its directories) imported at its last load.
_LOADED: dict[tuple[Path, ...], dict[str, ModuleType]] = {}


def top_level_names(paths: Iterable[Path]) -> frozenset[str]:
    """The module names a project's directories make importable: ``*.py`` files and directories.

    Any directory counts, with or without ``__init__.py`` (a namespace package).
    """
    names: set[str] = set()
    for path in paths:
        try:
            entries = list(path.iterdir())
        except OSError:  # a missing directory imports nothing; SQLMesh reports it
            continue
        for entry in entries:
            name = entry.stem if entry.suffix == ".py" else entry.name
            if name.isidentifier() and (entry.suffix == ".py" or entry.is_dir()):
                names.add(name)
    return frozenset(names)


@contextmanager
def own_modules(paths: Sequence[Path]) -> Iterator[None]:
    """``with own_modules(location.paths): ...`` around anything that imports project files.

    Modules of the project's names that come from elsewhere (another project, the host
    application) are out of ``sys.modules`` meanwhile; those from the project's own
    directories stay. What the load imports leaves ``sys.modules`` with it.
    """
    names = top_level_names(paths)
    key = _key(paths)
    with _LOAD_LOCK:
        before = _named(names)
        others = {name: module for name, module in before.items() if not _imported_from(module, key)}
        _drop(others)
        try:
            yield
        finally:
            imported = {name: module for name, module in _named(names).items() if before.get(name) is not module}
            _drop(imported)
            _LOADED[key] = imported
            sys.modules.update(others)


def project_module(paths: Sequence[Path], name: str) -> ModuleType | None:
    """The module of that name the project imported at its last load (not in ``sys.modules``)."""
    with _LOAD_LOCK:
        return _LOADED.get(_key(paths), {}).get(name)


def _key(paths: Sequence[Path]) -> tuple[Path, ...]:
    return tuple(path.resolve() for path in paths)


def _named(names: frozenset[str]) -> dict[str, ModuleType]:
    """Every module in ``sys.modules`` named one of ``names`` or a submodule of one."""
    return {name: module for name, module in list(sys.modules.items()) if name.partition(".")[0] in names}


def _drop(modules: dict[str, ModuleType]) -> None:
    for name in modules:
        sys.modules.pop(name, None)


def _imported_from(module: ModuleType | None, roots: tuple[Path, ...]) -> bool:
    """True for a module of the project's own files (a package: its directory)."""
    locations = [getattr(module, "__file__", None), *(getattr(module, "__path__", None) or [])]
    for location in locations:
        if location and any(Path(location).resolve().is_relative_to(root) for root in roots):
            return True
    return False
