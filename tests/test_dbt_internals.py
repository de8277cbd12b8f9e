"""The dbt seam (`dagctl_dagster/dbt/internals.py`), pinned to the dagster-dbt it was written for.

What a dbt step no longer does before dbt starts: a `dbt --version` subprocess (the version
comes from the installed dbt-core when the executable is this environment's) and, on
DuckDB, dbt's in-process adapter. On other warehouses row counts still arrive, in dbt's
order, without the step thread spinning while dbt builds.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.metadata
import inspect
import json
import resource
import shutil
import subprocess
import textwrap
import time
from functools import cached_property
from pathlib import Path

import dagster as dg
import dagster_dbt
import pytest
from dagster_dbt import DbtCliResource
from dagster_dbt.core import dbt_event_iterator
from dagster_dbt.core import resource as dbt_resource_module
from declared import assert_seam_covers
from projects import platform_repo

from dagctl_dagster.dbt import internals
from dagctl_dagster.dbt.asset_factory import dbt_assets
from dagctl_dagster.dbt.internals import DagctlDbtCliResource, own_dbt_executable

SLEEP_SECONDS = 3
EXAMPLE_DBT_PROJECT = Path(__file__).parent.parent / "examples" / "dbt_project"


def test_the_installed_dagster_dbt_dbt_core_and_dbt_duckdb_are_the_tested_versions():
    assert set(internals.TESTED_VERSIONS) == {"dagster-dbt", "dbt-core", "dbt-duckdb"}
    assert internals.untested_versions() == {}, (
        f"installed outside the range the dbt seam (dagctl_dagster/dbt/internals.py) was tested with: "
        f"{internals.untested_versions()}; tested: {internals.TESTED_VERSIONS}. Run this file, check "
        "what changed in the names it pins, then widen the TESTED_* constants."
    )
    assert importlib.metadata.version("dagster-dbt") == dagster_dbt.__version__


def test_the_seam_states_the_dagster_dbt_range_pyproject_declares():
    for name, tested in internals.TESTED_VERSIONS.items():
        assert_seam_covers(name, tested)


def test_the_seam_is_pinned_to_the_installed_dagster_dbt():
    """Fails when dagster-dbt changes what the seam overrides or calls."""
    assert isinstance(inspect.getattr_static(DbtCliResource, "_cli_version"), cached_property)
    assert list(inspect.signature(DbtCliResource._initialize_dbt_core_adapter).parameters) == ["self", "args"]
    cli_source = inspect.getsource(DbtCliResource.cli)
    assert "self._cli_version.major < 2" in cli_source
    assert "adapter = self._initialize_dbt_core_adapter(args)" in cli_source
    fetch = dbt_event_iterator._fetch_row_count_metadata
    assert list(inspect.signature(fetch).parameters) == ["invocation", "event"]
    assert "adapter" in {f.name for f in dataclasses.fields(dagster_dbt.DbtCliInvocation)}


def test_dagster_dbts_unexported_helpers_keep_their_signatures():
    from dagster_dbt.asset_utils import get_manifest_and_translator_from_dbt_assets
    from dagster_dbt.dbt_manifest import read_manifest_path

    helper = inspect.signature(get_manifest_and_translator_from_dbt_assets)
    assert list(helper.parameters) == ["dbt_assets"]
    assert "tuple[collections.abc.Mapping[str, typing.Any], 'DagsterDbtTranslator'" in str(helper.return_annotation)
    assert list(inspect.signature(read_manifest_path).parameters) == ["manifest_path"]


def test_the_manifest_and_translator_of_dbt_assets_come_back_as_built(tmp_path):
    project = tmp_path / "dbt_project"
    shutil.copytree(EXAMPLE_DBT_PROJECT, project, ignore=shutil.ignore_patterns("target", "logs", "*.duckdb"))
    assets_def = dbt_assets(project, name="example", target="dev")

    manifest, translator = internals.get_manifest_and_translator_from_dbt_assets(assets_def)

    assert manifest["metadata"]["adapter_type"] == "duckdb"
    model = next(props for props in manifest["nodes"].values() if props["resource_type"] == "model")
    assert translator.get_asset_key(model) in assets_def.keys
    manifest_path = project / "target" / "manifest.json"
    assert internals.read_manifest(manifest_path)["metadata"] == manifest["metadata"]


def test_dbt_cores_version_and_adapter_internals_are_where_the_seam_reads_them():
    from dbt.adapters.base.impl import BaseAdapter
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    from dbt.adapters.duckdb.impl import DuckDBAdapter

    assert internals.dbt_core_version() == importlib.metadata.version("dbt-core")
    assert list(inspect.signature(BaseAdapter.cleanup_connections).parameters) == ["self"]
    assert "self.connections = self.ConnectionManager(" in inspect.getsource(BaseAdapter.__init__)
    assert DuckDBAdapter.ConnectionManager is DuckDBConnectionManager
    assert isinstance(inspect.getattr_static(DuckDBConnectionManager, "close_all_connections"), classmethod)
    assert DuckDBAdapter.__name__ == "DuckDBAdapter"  # is_duckdb_adapter compares the name
    assert internals.is_duckdb_adapter(None) is False
    internals.release_warehouse(None)  # a run without an in-process adapter has nothing to release


def a_dbt_project(root: Path) -> str:
    (root / "dbt_project.yml").write_text("name: p\nversion: '1.0.0'\nconfig-version: 2\nprofile: p\n")
    return str(root)


def test_the_dbt_version_is_read_without_a_subprocess_and_matches_dbt_version(tmp_path, monkeypatch):
    started: list[object] = []
    original = dbt_resource_module.check_output
    monkeypatch.setattr(dbt_resource_module, "check_output", lambda *a, **k: (started.append(a), original(*a, **k))[1])
    ours = DagctlDbtCliResource(project_dir=a_dbt_project(tmp_path), dbt_executable=str(own_dbt_executable()))

    answered = ours._cli_version

    assert started == []
    reported = subprocess.run([str(own_dbt_executable()), "--version"], capture_output=True, text=True, check=True)
    assert f"installed: {answered}" in reported.stdout


def test_another_dbt_executable_is_still_asked_for_its_version(tmp_path, monkeypatch):
    other = tmp_path / "bin" / "dbt"
    other.parent.mkdir()
    other.write_text(f'#!/bin/sh\nexec {own_dbt_executable()} "$@"\n')
    other.chmod(0o755)
    started: list[object] = []
    original = dbt_resource_module.check_output
    monkeypatch.setattr(dbt_resource_module, "check_output", lambda *a, **k: (started.append(a), original(*a, **k))[1])
    internals._SUBPROCESS_VERSIONS.pop(str(other), None)

    version = DagctlDbtCliResource(project_dir=a_dbt_project(tmp_path), dbt_executable=str(other))._cli_version

    assert len(started) == 1 and str(other) in started[0][0]
    again = DagctlDbtCliResource(project_dir=a_dbt_project(tmp_path), dbt_executable=str(other))._cli_version
    assert again == version
    assert len(started) == 1, "the version of one executable is asked once per process"


def test_ordered_map_keeps_order_reraises_stream_errors_and_does_not_poll():
    def items():
        for index in range(4):
            time.sleep(0.5)
            yield index
        raise ValueError("stream broke")

    def slow_for_even(value: int) -> int:
        time.sleep(0.3 if value % 2 == 0 else 0)
        return value * 10

    seen: list[int] = []
    cpu_before = time.thread_time()
    with pytest.raises(ValueError, match="stream broke"):
        for value in internals._ordered_map(items(), slow_for_even, threads=2):
            seen.append(value)
    consumer_cpu = time.thread_time() - cpu_before

    assert seen == [0, 10, 20, 30]
    assert consumer_cpu < 0.5, f"the consumer burned {consumer_cpu:.2f}s of CPU waiting"


def _postgres_dbt_project(root: Path, postgres_url: str) -> Path:
    connection = platform_repo.environment(postgres_url)
    project = root / "pg_project"
    (project / "models").mkdir(parents=True)
    profile = {
        "pg_project": {
            "target": "dev",
            "outputs": {
                "dev": {
                    "type": "postgres",
                    "host": connection["PLATFORM_PG_HOST"],
                    "port": int(connection["PLATFORM_PG_PORT"]),
                    "user": connection["PLATFORM_PG_USER"],
                    "password": connection["PLATFORM_PG_PASSWORD"],
                    "dbname": connection["PLATFORM_PG_DB"],
                    "schema": "marts",
                    "threads": 2,
                }
            },
        }
    }
    (project / "profiles.yml").write_text(json.dumps(profile))
    (project / "dbt_project.yml").write_text(
        textwrap.dedent(
            """
            name: pg_project
            version: "1.0.0"
            config-version: 2
            profile: pg_project
            models:
              pg_project:
                +materialized: table
            """
        )
    )
    models = project / "models"
    (models / "three_rows.sql").write_text("select * from (values (1), (2), (3)) as t(id)\n")
    (models / "slow.sql").write_text(
        f"select id from {{{{ ref('three_rows') }}}}, (select pg_sleep({SLEEP_SECONDS})) as s where id < 3\n"
    )
    (models / "as_view.sql").write_text("{{ config(materialized='view') }}\nselect id from {{ ref('slow') }}\n")
    return project


@pytest.mark.timeout(600)
def test_postgres_row_counts_arrive_in_order_without_spinning_while_dbt_builds(tmp_path, dagster_home, postgres_url):
    project = _postgres_dbt_project(tmp_path, postgres_url)
    assets_def = dbt_assets(project, name="pg_project", target="dev")
    usage_before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.monotonic()

    result = dg.materialize([assets_def], raise_on_error=False)

    wall = time.monotonic() - started
    usage_after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (usage_after.ru_utime - usage_before.ru_utime) + (usage_after.ru_stime - usage_before.ru_stime)
    assert result.success
    materializations = [e.materialization for e in result.get_asset_materialization_events()]
    rows = {m.asset_key.path[-1]: m.metadata.get("dagster/row_count") for m in materializations}
    assert [m.asset_key.path[-1] for m in materializations] == ["three_rows", "slow", "as_view"]
    assert rows["three_rows"].value == 3 and rows["slow"].value == 2
    assert rows["as_view"] is None  # views are not counted (dagster-dbt's rule)
    # The build waited SLEEP_SECONDS on the warehouse; a polling loop would have burned
    # about that much CPU in this process meanwhile.
    assert wall >= SLEEP_SECONDS
    assert cpu < wall - SLEEP_SECONDS / 2, f"{cpu:.1f}s CPU over {wall:.1f}s"


def test_the_pins_cover_every_internal_name_the_dbt_seam_uses():
    """An internal import or private name in the seam that this file does not pin fails."""
    from test_seams import DBT_SEAM, dbt_library

    library = dbt_library()
    pinned = Path(__file__).read_text()
    used: set[str] = set()
    for node in ast.walk(ast.parse(DBT_SEAM.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and library.owns(node.module):
            used.update(alias.name for alias in node.names if (node.module, alias.name) not in library.public_imports)
        elif isinstance(node, ast.Attribute) and node.attr in library.private_names | library.internal_members:
            used.add(node.attr)
        elif isinstance(node, ast.Constant) and node.value in library.private_names | library.internal_members:
            used.add(node.value)
    assert used, "the check found nothing: it no longer reads the seam"
    assert sorted(name for name in used if name not in pinned) == []
