"""Stock Dagster's floor for a webserver workspace load: locations of one no-op asset each.

What ``dagster-webserver`` needs to start and load ``locations`` code locations that import
nothing but Dagster: its own start, one code server process per location, the gRPC round
trips. The platform section's loads are this floor plus the projects' own load.

Example::

    series = measure_webserver_floor(Path("/tmp/floor"), locations=10, repeats=3, timeout_s=600)
"""

from __future__ import annotations

import os
import tempfile
import textwrap
from pathlib import Path

import yaml

from benchmarks.report import Series
from benchmarks.webserver_probe import check_served, started_webserver, wait_until_loaded

FLOOR_DEFINITIONS = textwrap.dedent(
    '''\
    """Dagster's floor: one no-op asset."""

    import dagster as dg


    @dg.asset
    def noop() -> None:
        return None


    defs = dg.Definitions(assets=[noop])
    '''
)


def floor_location_names(locations: int) -> list[str]:
    return [f"floor{index:02d}" for index in range(locations)]


def write_floor_workspace(root: Path, locations: int) -> Path:
    """``definitions_floor.py`` and a workspace serving it as ``locations`` locations."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "definitions_floor.py").write_text(FLOOR_DEFINITIONS)
    entries = [
        {"python_file": {"relative_path": "definitions_floor.py", "attribute": "defs", "location_name": name}}
        for name in floor_location_names(locations)
    ]
    workspace = root / f"workspace_floor_{locations}.yaml"
    workspace.write_text(yaml.safe_dump({"load_from": entries}, sort_keys=False))
    return workspace


def measure_webserver_floor(root: Path, *, locations: int, repeats: int, timeout_s: float, series: Series) -> None:
    """Start a webserver on the floor workspace ``repeats`` times; each load's seconds go to ``series``."""
    import dagster as dg

    workspace = write_floor_workspace(root, locations)
    names = floor_location_names(locations)
    with tempfile.TemporaryDirectory(prefix="bench_floor_home_") as home:
        Path(home, "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        dg.DagsterInstance.from_config(home).dispose()
        env = {**os.environ, "DAGSTER_HOME": home}
        for _ in range(repeats):
            with started_webserver(root, workspace.name, env, root / f"webserver_floor_{locations}.log") as server:
                load = wait_until_loaded(server, set(names), timeout_s=timeout_s)
                check_served(server.port, {name: [] for name in names}, {name: 1 for name in names})
            series.samples.append(load.seconds)
