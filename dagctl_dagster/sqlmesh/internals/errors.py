"""SQLMesh's errors, read into this project's terms."""

from __future__ import annotations

from pathlib import Path


def is_sqlmesh_error(exc: BaseException) -> bool:
    """SQLMesh's own refusals and failures (their text is the reason, without a type name)."""
    from sqlmesh.utils.errors import SQLMeshError

    return isinstance(exc, SQLMeshError)


def error_file(exc: BaseException) -> Path | None:
    """The file a load error names, where SQLMesh (or the error it wraps) says it."""
    for candidate in (exc, exc.__cause__, exc.__context__):
        path = getattr(candidate, "path", None) or getattr(candidate, "_path", None)
        if path:
            return Path(path)
    return None
