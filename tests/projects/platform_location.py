"""One code location of many projects, as a platform team runs them: the bundled SQLMesh
example, the `shop` and `events` SQLMesh fixtures, the two-repository SQLMesh layout
(`repo_1` + `repo_2`, one SQLMesh project group), two SQLMesh projects whose top-level
`helpers` packages share a name (`alpha`, `beta`) and the bundled dbt example twice (`dbt_a`,
`dbt_b`, each with its own DuckDB file)."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from conftest import REPO_ROOT

FIDELITY = REPO_ROOT / "tests" / "fidelity" / "projects"
_IGNORE = shutil.ignore_patterns("*.duckdb", "*.duckdb.wal", ".cache", "logs", "target", "__pycache__")

# dagctl project -> (framework, source directory, path in the deployment)
PROJECTS: dict[str, tuple[str, Path, str]] = {
    "sqlmesh_example": ("sqlmesh", REPO_ROOT / "examples" / "sqlmesh_project", "sqlmesh/example"),
    "shop": ("sqlmesh", FIDELITY / "shop" / "warehouse", "sqlmesh/shop"),
    "events": ("sqlmesh", FIDELITY / "events" / "pipelines", "sqlmesh/events"),
    "repo_1": ("sqlmesh", FIDELITY / "multi_repo" / "repo_1", "sqlmesh/multi/repo_1"),
    "repo_2": ("sqlmesh", FIDELITY / "multi_repo" / "repo_2", "sqlmesh/multi/repo_2"),
    # two projects with a top-level `helpers` package of the same name and other content
    "alpha": ("sqlmesh", REPO_ROOT / "tests" / "fidelity" / "same_name_packages" / "alpha", "sqlmesh/alpha"),
    "beta": ("sqlmesh", REPO_ROOT / "tests" / "fidelity" / "same_name_packages" / "beta", "sqlmesh/beta"),
    "dbt_a": ("dbt", REPO_ROOT / "examples" / "dbt_project", "dbt/a"),
    "dbt_b": ("dbt", REPO_ROOT / "examples" / "dbt_project", "dbt/b"),
}


def write_platform_location(root: Path, *, extra: dict | None = None) -> Path:
    """The deployment under ``root``: projects, `.dagctl/config.yaml`, `definitions.py`,
    `workspace.yaml` (one location, ``dagctl``). Returns ``root``."""
    entries = []
    for name, (framework, source, path) in PROJECTS.items():
        shutil.copytree(source, root / path, ignore=_IGNORE)
        entry = {"name": name, "framework": framework, "path": path}
        if framework == "dbt":
            _own_dbt_warehouse(root / path, name)
        entries.append(entry | (extra or {}).get(name, {}))
    (root / ".dagctl").mkdir()
    (root / ".dagctl" / "config.yaml").write_text(yaml.safe_dump({"version": 1, "projects": entries}, sort_keys=False))
    shutil.copy(REPO_ROOT / "definitions.py", root / "definitions.py")
    shutil.copy(REPO_ROOT / "workspace.yaml", root / "workspace.yaml")
    return root


def _own_dbt_warehouse(project_dir: Path, name: str) -> None:
    """Each copy of the dbt example writes its own DuckDB file."""
    profiles = project_dir / "profiles.yml"
    profiles.write_text(profiles.read_text().replace("'warehouse.duckdb'", f"'{name}.duckdb'"))
