"""Custom materializations of several projects in one process: one name, one code.

A model of kind ``CUSTOM`` names its materialization, and SQLMesh resolves that name among
every ``CustomMaterialization`` subclass the process has imported, in a process-wide cache
filled at the first lookup (at load, to type the model's kind, and at evaluation). Unlike
macros and Python models, a materialization's code is not serialized into the model. So when
two projects of one process (a code location, a run over both) define a materialization of
the same name with other code, both projects' models would run one of the two classes. The
second project's load is refused instead, naming both files. The same file content in both
projects (a copied materialization) is one code, and loads.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dagctl_dagster.errors import ProjectLoadError


@dataclass(frozen=True)
class _Definition:
    project: str
    paths: tuple[Path, ...]
    file: Path
    digest: str


_LOCK = threading.Lock()
_DEFINED: dict[str, _Definition] = {}  # materialization name -> the project that defined it first


def claim_materializations(project: str, paths: Sequence[Path]) -> None:
    """Records the custom materializations the project's files define, after its load.

    Raises:
        ProjectLoadError: a materialization of that name has other code in another project.
    """
    from dagctl_dagster.sqlmesh.internals import custom_materializations

    roots = tuple(path.resolve() for path in paths)
    own = {name: file for name, cls in custom_materializations() if (file := _own_file(paths, cls)) is not None}
    with _LOCK:
        found = {name: _Definition(project, roots, file, _digest(file)) for name, file in sorted(own.items())}
        for name, definition in found.items():
            known = _DEFINED.get(name)
            if known is not None and known.paths != roots and known.digest != definition.digest:
                raise ProjectLoadError(
                    project,
                    f"its custom materialization '{name}' has other code than the one of the same name in "
                    f"project '{known.project}' ({known.file}); SQLMesh finds a materialization by its name "
                    "in the whole process, so the models of both projects would run one of them. Give one "
                    "of them another NAME, or serve the projects from separate code locations.",
                    definition.file,
                )
        _DEFINED.update(found)


def _own_file(paths: Sequence[Path], cls: type) -> Path | None:
    """The file of the project's module that defines ``cls``; None for another project's class."""
    from dagctl_dagster.sqlmesh.imports import project_module

    module = project_module(paths, cls.__module__)
    if module is None or vars(module).get(cls.__name__) is not cls or not getattr(module, "__file__", None):
        return None
    return Path(str(module.__file__)).resolve()


def _digest(file: Path) -> str:
    try:
        return hashlib.sha256(file.read_bytes()).hexdigest()
    except OSError:  # a file deleted since its import: compare by path alone
        return str(file)
