"""Small SQLMesh repositories written the way `sqlmesh init` writes them, for behaviour tests.

``write_repository(root, models={...})`` lays out ``root/.dagctl/config.yaml``,
``root/definitions.py`` and ``root/project/`` (a SQLMesh project with a DuckDB gateway left
at its defaults: ``database: db.duckdb``, relative, one concurrent task), and
``run_job(root, ...)`` runs ``<project>_run`` through the real `dagster` CLI from another
working directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
from dataclasses import dataclass
from pathlib import Path

from conftest import venv_command

PROJECT = "proj"
JOB = f"{PROJECT}_run"

CONFIG_YAML = """\
gateways:
  duckdb:
    connection:
      type: duckdb
      database: db.duckdb

default_gateway: duckdb

model_defaults:
  dialect: duckdb
  start: 2026-11-20
  cron: '@daily'
"""


def write_repository(root: Path, models: dict[str, str], *, tests: dict[str, str] | None = None) -> Path:
    project_dir = root / "project"
    (project_dir / "models").mkdir(parents=True)
    (project_dir / "config.yaml").write_text(CONFIG_YAML)
    for name, text in models.items():
        (project_dir / "models" / name).write_text(textwrap.dedent(text).lstrip())
    if tests:
        (project_dir / "tests").mkdir()
        for name, text in tests.items():
            (project_dir / "tests" / name).write_text(textwrap.dedent(text).lstrip())
    (root / ".dagctl").mkdir()
    (root / ".dagctl" / "config.yaml").write_text(
        f"version: 1\nprojects:\n  - name: {PROJECT}\n    framework: sqlmesh\n    path: project\n"
    )
    (root / "definitions.py").write_text(
        "from pathlib import Path\n\nfrom dagctl_dagster import load_definitions\n\n"
        "defs = load_definitions(Path(__file__).resolve().parent / '.dagctl' / 'config.yaml')\n"
    )
    return root


def wide_models(count: int) -> dict[str, str]:
    """A seed-free fan-out: one source model and ``count`` models reading it."""
    models = {"source.sql": "MODEL (name demo.source, kind FULL);\nSELECT range AS id FROM range(200)\n"}
    for index in range(count):
        models[f"m{index:02d}.sql"] = (
            f"MODEL (name demo.m{index:02d}, kind FULL);\nSELECT id, id * {index} AS value FROM demo.source\n"
        )
    return models


@dataclass
class JobRun:
    returncode: int
    output: str


def dagster_env(home: Path, **overrides: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "MAX_CONCURRENT_MODELS"}
    env.update({"DAGSTER_HOME": str(home), **overrides})
    return env


def start_job(root: Path, home: Path, cwd: Path, **env: str) -> subprocess.Popen:
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    cwd.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [venv_command("dagster"), "job", "execute", "-f", str(root / "definitions.py"), "-j", JOB],
        cwd=cwd,
        env=dagster_env(home, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def run_job(root: Path, home: Path, cwd: Path, timeout: float = 300, **env: str) -> JobRun:
    process = start_job(root, home, cwd, **env)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        raise AssertionError(f"`dagster job execute` hung for {timeout}s:\n{output[-6000:]}") from None
    return JobRun(process.returncode, output)
