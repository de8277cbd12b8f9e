"""The SQLMesh versions the seam was tested with, and the names of SQLMesh's public API."""

from __future__ import annotations

import importlib.metadata

from packaging.specifiers import SpecifierSet
from packaging.version import Version

# Every internal name the seam uses is pinned by tests/test_sqlmesh_internals.py on this range.
TESTED_SQLMESH = ">=0.236,<0.237"  # what pyproject.toml declares

# The members of a Context that SQLMesh's CLI (sqlmesh/cli/) calls on its context: SQLMesh's
# documented Python API (docs/reference/python.md). Any other member is behind the seam.
PUBLIC_CONTEXT_MEMBERS = frozenset(
    {
        "audit",
        "check_intervals",
        "clear_caches",
        "close",
        "config",
        "config_for_node",
        "console",
        "create_external_models",
        "create_test",
        "destroy",
        "diff",
        "evaluate",
        "export_state",
        "fetchdf",
        "format",
        "get_model",
        "import_state",
        "invalidate_environment",
        "lint_models",
        "migrate",
        "models",
        "plan",
        "print_environment_names",
        "print_info",
        "render",
        "render_dag",
        "rewrite",
        "rollback",
        "run",
        "run_janitor",
        "table_diff",
        "table_name",
        "test",
    }
)

# Model properties SQLMesh documents (MODEL(...) in its model configuration reference) that the
# translator reads from the Model objects it is given.
PUBLIC_MODEL_PROPERTIES = frozenset(
    {"name", "kind", "cron", "owner", "tags", "description", "dialect", "column_descriptions"}
)


def installed_sqlmesh_version() -> Version:
    return Version(importlib.metadata.version("sqlmesh"))


def is_tested_sqlmesh(version: Version | None = None) -> bool:
    """Whether ``version`` (default: the installed SQLMesh) is in :data:`TESTED_SQLMESH`."""
    return (version or installed_sqlmesh_version()) in SpecifierSet(TESTED_SQLMESH)
