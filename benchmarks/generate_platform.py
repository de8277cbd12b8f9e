"""A generated platform deployment: many projects in one config, served as one code location or several.

``projects`` projects share ``models`` models: every project but the last is a generated
SQLMesh project (:mod:`benchmarks.generate`, FULL DuckDB models) with its own schema
(``p00``, ``p01``, ...) and its own warehouse and state files; the last is a generated dbt
project (:mod:`benchmarks.generate_dbt`). One ``.dagctl/config.yaml`` lists them all; the
repository's own ``definitions.py`` serves it, and two workspaces point a webserver at it:

- ``workspace_one.yaml``: one code location (``platform``) with every project;
- ``workspace_locations.yaml``: one location per project, written by ``dagctl-dagster workspace``.

Example::

    platform = generate_platform(Path("/tmp/platform"), projects=10, models=2000)
    platform.forget_caches()   # a cold load: no translation cache, no SQLMesh cache, no dbt manifest
"""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

import yaml

from benchmarks.generate import GeneratedRepository, RepositoryRoot, Shape, generate_repository
from benchmarks.generate_dbt import DbtRepository, generate_dbt_repository

PLATFORM_LOCATION = "platform"  # the one-location layout's location name
MAX_WIDTH = 20
SQLMESH_CONCURRENT_TASKS = 5  # FACTS.md: a DuckDB gateway needs its own connections for model threads
ONE_LOCATION_WORKSPACE = "workspace_one.yaml"
LOCATIONS_WORKSPACE = "workspace_locations.yaml"
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Platform(RepositoryRoot):
    """Where a generated deployment keeps its parts; project names are its code locations' names."""

    root: Path
    sqlmesh: tuple[GeneratedRepository, ...]
    dbt: DbtRepository

    @property
    def names(self) -> list[str]:
        return [repo.shape.schema for repo in self.sqlmesh] + [self.dbt_name]

    @property
    def dbt_name(self) -> str:
        return project_name(len(self.sqlmesh))

    @property
    def models(self) -> int:
        return sum(repo.models for repo in self.sqlmesh) + self.dbt.models

    @property
    def one_location_workspace(self) -> Path:
        return self.root / ONE_LOCATION_WORKSPACE

    @property
    def locations_workspace(self) -> Path:
        return self.root / LOCATIONS_WORKSPACE

    def cache_dirs(self) -> list[Path]:
        """What a warm load reads: each SQLMesh project's ``.cache`` (SQLMesh's cache and
        dagctl's translation cache) and the dbt project's ``target`` (manifest, fingerprint)."""
        return [repo.project_dir / ".cache" for repo in self.sqlmesh] + [self.dbt.project_dir / "target"]

    def forget_caches(self) -> None:
        for path in self.cache_dirs():
            shutil.rmtree(path, ignore_errors=True)


def project_name(index: int) -> str:
    return f"p{index:02d}"


def layer_width(models_per_project: int) -> int:
    """Layers of :data:`MAX_WIDTH` (fewer for tiny projects: at least two layers)."""
    return min(MAX_WIDTH, max(2, models_per_project // 2))


def generate_platform(root: Path, *, projects: int, models: int) -> Platform:
    """Write the deployment at ``root``: ``projects - 1`` SQLMesh projects and one dbt project,
    ``models // projects`` models each."""
    check_platform_size(projects, models)
    root = Path(root).resolve()
    per_project = models // projects
    width = layer_width(per_project)
    sqlmesh = tuple(
        generate_repository(
            root / project_name(index),
            shape=Shape(
                models=per_project,
                width=width,
                concurrent_tasks=SQLMESH_CONCURRENT_TASKS,
                schema=project_name(index),
            ),
        )
        for index in range(projects - 1)
    )
    dbt = generate_dbt_repository(
        root / project_name(projects - 1), models=per_project, width=width, threads=SQLMESH_CONCURRENT_TASKS
    )
    platform = Platform(root=root, sqlmesh=sqlmesh, dbt=dbt)
    platform.config_path.parent.mkdir(parents=True, exist_ok=True)
    platform.config_path.write_text(platform_config(platform))
    shutil.copy(REPO_ROOT / "definitions.py", platform.definitions)
    platform.one_location_workspace.write_text(
        yaml.safe_dump(
            {"load_from": [{"python_file": {"relative_path": "definitions.py", "location_name": PLATFORM_LOCATION}}]},
            sort_keys=False,
        )
    )
    _write_locations_workspace(platform)
    return platform


def check_platform_size(projects: int, models: int) -> None:
    if projects < 2:
        raise ValueError(f"--platform-projects must be at least 2 (SQLMesh projects and one dbt); got {projects}")
    if models % projects or models // projects < 4:
        raise ValueError(
            f"--platform-models ({models}) must be a multiple of --platform-projects ({projects}) "
            "with at least 4 models per project"
        )


def platform_config(platform: Platform) -> str:
    entries: list[dict] = [
        {
            "name": repo.shape.schema,
            "framework": "sqlmesh",
            "path": str(repo.project_dir.relative_to(platform.root)),
            "gateway": "local",
            "environment": "prod",
            "janitor_schedule": None,
            "state_backup": {"enabled": False},
        }
        for repo in platform.sqlmesh
    ]
    entries.append(
        {
            "name": platform.dbt_name,
            "framework": "dbt",
            "path": str(platform.dbt.project_dir.relative_to(platform.root)),
        }
    )
    header = textwrap.dedent(
        f"""\
        # Generated by benchmarks/generate_platform.py: {len(entries)} projects, {platform.models} models.
        """
    )
    return header + yaml.safe_dump({"version": 1, "projects": entries}, sort_keys=False)


def _write_locations_workspace(platform: Platform) -> None:
    """``dagctl-dagster workspace``, as a user writes the several-locations workspace."""
    from benchmarks.contenders import ContenderFailed, venv_command

    command = [
        venv_command("dagctl-dagster"),
        "workspace",
        "--config",
        str(platform.config_path),
        "--definitions",
        "definitions.py",
        "--output",
        LOCATIONS_WORKSPACE,
    ]
    done = subprocess.run(command, cwd=platform.root, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise ContenderFailed(f"`{' '.join(command)}` exited with {done.returncode}: {done.stderr.strip()}")
