"""The community ``dagster-sqlmesh`` package as a contender, from its own virtualenv.

It is not in this project's lock (it pins its own Dagster); install it apart, e.g.::

    uv venv /tmp/peer-venv --python 3.11
    VIRTUAL_ENV=/tmp/peer-venv uv pip install dagster-sqlmesh
    dagctl-dagster bench --peer-python /tmp/peer-venv/bin/python

The generated code location is the package's documented shape: one ``@sqlmesh_assets``
multi-asset over the whole project whose body is ``SQLMeshResource.run`` on the prod
environment (a plan, which computes the missing intervals, then a run).
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

from benchmarks.generate import GeneratedRepository

PEER_JOB_NAME = "peer_run"
PEER_PYTHON_ENV = "DAGCTL_BENCH_PEER_PYTHON"


def peer_python(option: Path | None) -> Path | None:
    """The peer virtualenv's python, from the option or the environment; None when neither is set."""
    raw = option or os.environ.get(PEER_PYTHON_ENV)
    if not raw:
        return None
    python = Path(raw)
    if not python.is_file() or not (python.parent / "dagster").is_file():
        raise SystemExit(
            f"--peer-python {python}: expected the python of a virtualenv with dagster-sqlmesh installed "
            f"(its bin/ also holds `dagster`); see benchmarks/peer.py"
        )
    return python


def write_peer_definitions(repo: GeneratedRepository) -> Path:
    path = repo.root / "definitions_peer.py"
    path.write_text(
        textwrap.dedent(
            f'''\
            """The same SQLMesh project through dagster-sqlmesh (one multi-asset op; job {PEER_JOB_NAME})."""

            import dagster as dg
            from dagster_sqlmesh import SQLMeshContextConfig, SQLMeshResource, sqlmesh_assets

            config = SQLMeshContextConfig(path={str(repo.project_dir)!r}, gateway="local")


            @sqlmesh_assets(environment="prod", config=config, name="bench_peer")
            def bench_peer(context: dg.AssetExecutionContext, sqlmesh: SQLMeshResource):
                yield from sqlmesh.run(context, config=config, environment="prod")


            defs = dg.Definitions(
                assets=[bench_peer],
                resources={{"sqlmesh": SQLMeshResource()}},
                jobs=[dg.define_asset_job("{PEER_JOB_NAME}", selection=[bench_peer])],
            )
            '''
        )
    )
    return path
