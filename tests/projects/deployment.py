"""What makes a generated test repository a dagctl deployment: its config, its definitions, its tables."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import sqlalchemy as sa


def write_deployment(root: Path, projects: Mapping[str, tuple[str, str]]) -> Path:
    """`.dagctl/config.yaml` listing ``{name: (framework, path)}``, and a `definitions.py` loading it."""
    (root / ".dagctl").mkdir()
    entries = "".join(
        f"  - name: {name}\n    framework: {framework}\n    path: {path}\n"
        for name, (framework, path) in projects.items()
    )
    (root / ".dagctl" / "config.yaml").write_text("version: 1\nprojects:\n" + entries)
    (root / "definitions.py").write_text(
        "from pathlib import Path\nfrom dagctl_dagster import load_definitions\n"
        "defs = load_definitions(Path(__file__).parent / '.dagctl' / 'config.yaml')\n"
    )
    return root


def plan_without_backfill(project_dir: Path, *, then_run: Sequence[str] = ()) -> None:
    """Create or update prod without evaluating anything (runs do the work), then `sqlmesh run`
    the ``then_run`` models. In the project's directory, as `sqlmesh` runs: a DuckDB path in
    its config is relative to it."""
    from sqlmesh import Context

    previous = os.getcwd()
    os.chdir(project_dir)
    try:
        context = Context(paths=[str(project_dir)])
        try:
            context.plan("prod", auto_apply=True, no_prompts=True, skip_backfill=True, skip_tests=True)
            if then_run:
                context.run("prod", select_models=list(then_run))
        finally:
            context.close()
    finally:
        os.chdir(previous)


def execute_sql(postgres_url: str, *statements: str) -> None:
    """Run ``statements`` in one transaction on the database at ``postgres_url``."""
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))
    finally:
        engine.dispose()
