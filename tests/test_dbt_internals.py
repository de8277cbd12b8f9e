"""The dbt seam (`dagctl_dagster/dbt/internals/`), pinned to the dagster-dbt it was written for.

What a dbt step no longer does before dbt starts: a `dbt --version` subprocess (the version
comes from the installed dbt-core when the executable is this environment's) and, on
DuckDB, dbt's in-process adapter. On other warehouses measurements (columns, row counts)
arrive in dbt's order, without the step thread spinning while dbt builds; on DuckDB dbt's own
process measures (`dagctl-dbt`), through what dbt and dagster-dbt do with a JSON log line.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.metadata
import inspect
import json
import os
import resource
import shutil
import subprocess
import sys
import textwrap
import time
from functools import cached_property
from pathlib import Path

import dagster as dg
import dagster_dbt
import pytest
from dagster_dbt import DbtCliResource
from dagster_dbt.core import resource as dbt_resource_module
from declared import assert_seam_covers
from projects import platform_repo

from dagctl_dagster.dbt import internals
from dagctl_dagster.dbt.asset_factory import dbt_assets
from dagctl_dagster.dbt.internals import measuring, resources
from dagctl_dagster.dbt.internals.resources import DagctlDbtCliResource, own_dbt_executable

SLEEP_SECONDS = 3
EXAMPLE_DBT_PROJECT = Path(__file__).parent.parent / "examples" / "dbt_project"


def test_the_installed_dagster_dbt_dbt_core_and_dbt_duckdb_are_the_tested_versions():
    assert set(internals.TESTED_VERSIONS) == {"dagster-dbt", "dbt-core", "dbt-duckdb"}
    assert internals.untested_versions() == {}, (
        f"installed outside the range the dbt seam (dagctl_dagster/dbt/internals/) was tested with: "
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
    assert "adapter" in {f.name for f in dataclasses.fields(dagster_dbt.DbtCliInvocation)}
    # What dagster-dbt does with a JSON JinjaLogInfo line of a node (the `dagctl-dbt` measurement):
    # keeps it as the node's result event's _event_history_metadata, turns its columns into the
    # column schema, and does not print it.
    stream = inspect.getsource(dagster_dbt.DbtCliInvocation.stream_raw_events)
    assert 'event.raw_event["info"]["name"] == "JinjaLogInfo"' in stream
    assert "event = replace(event, event_history_metadata=event_history_metadata)" in stream
    from dagster_dbt.core.dbt_cli_event import DbtCliEventMessage, DbtCoreCliEventMessage

    assert "self._event_history_metadata = event_history_metadata" in inspect.getsource(DbtCliEventMessage)
    assert "default_metadata_from_dbt_resource_props(self._event_history_metadata)" in inspect.getsource(
        DbtCliEventMessage._get_column_schema_metadata
    )
    result_events = inspect.getsource(DbtCoreCliEventMessage.is_result_event.fget)
    assert all(f'"{name}"' in result_events for name in measuring._RESULT_EVENTS)


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

    manifest, translator = resources.get_manifest_and_translator_from_dbt_assets(assets_def)

    assert manifest["metadata"]["adapter_type"] == "duckdb"
    model = next(props for props in manifest["nodes"].values() if props["resource_type"] == "model")
    assert translator.get_asset_key(model) in assets_def.keys
    manifest_path = project / "target" / "manifest.json"
    assert resources.read_manifest(manifest_path)["metadata"] == manifest["metadata"]


def test_loading_parses_in_process_and_writes_the_manifest_dbt_parse_writes(tmp_path, monkeypatch):
    """The oracle is dbt's own CLI: `dbt parse` of an identical copy writes the same manifest
    (every node, macro, edge and its metadata but the clocks); loading started no dbt process
    and left dbt's event loggers as it found them."""
    from dbt.cli.main import dbtRunner  # the seam's entry point (parsing.py)
    from dbt_common.events.event_manager_client import get_event_manager

    from dagctl_dagster.dbt.manifest import open_dbt_project, prepare_manifest

    ours, native = tmp_path / "ours" / "dbt_project", tmp_path / "native" / "dbt_project"
    for copy in (ours, native):
        shutil.copytree(EXAMPLE_DBT_PROJECT, copy, ignore=shutil.ignore_patterns("target", "logs", "*.duckdb"))
    started: list[object] = []
    original_popen = subprocess.Popen.__init__
    monkeypatch.setattr(
        subprocess.Popen, "__init__", lambda self, *a, **k: (started.append((a, k)), original_popen(self, *a, **k))[1]
    )
    loggers_before = list(get_event_manager().loggers)
    written = prepare_manifest("dbt_example", open_dbt_project("dbt_example", ours, target="dev", profiles_dir=None))
    monkeypatch.undo()
    assert get_event_manager().loggers == loggers_before  # dbt's later events do not go to the parse's log
    assert [call for call in started if "dbt" in str(call)] == [] and callable(dbtRunner)
    command = [str(own_dbt_executable()), "parse", "--quiet", "--no-send-anonymous-usage-stats", "--target", "dev"]
    command += ["--profiles-dir", str(native)]  # usage stats off, as dagster-dbt's `dbt parse` ran
    subprocess.run(command, cwd=native, check=True, capture_output=True)

    def comparable(manifest_path: Path, project_dir: Path) -> dict:
        manifest = json.loads(manifest_path.read_text().replace(str(project_dir), "<project>"))
        for clock in ("generated_at", "invocation_id", "invocation_started_at", "run_started_at"):
            manifest["metadata"].pop(clock)
        for section in ("nodes", "sources", "macros", "docs"):
            for entry in manifest[section].values():
                entry.pop("created_at", None)
        return manifest

    assert comparable(written, ours) == comparable(native / "target" / "manifest.json", native)
    # A later load finds the manifest current: it neither parses nor imports dbt's CLI.
    warm_load = (
        "import sys, pathlib; import dagctl_dagster.dbt.asset_factory; "
        "from dagctl_dagster.dbt.manifest import open_dbt_project, prepare_manifest; "
        f"path = prepare_manifest('dbt_example', open_dbt_project('dbt_example', pathlib.Path({str(ours)!r}), "
        "target='dev', profiles_dir=None)); print(path.stat().st_mtime_ns, 'dbt.cli.main' in sys.modules)"
    )
    loaded = subprocess.run([sys.executable, "-c", warm_load], capture_output=True, text=True, timeout=120)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.split() == [str(written.stat().st_mtime_ns), "False"]


def test_dbt_cores_version_and_adapter_internals_are_where_the_seam_reads_them():
    from dbt.adapters.base.impl import BaseAdapter
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    from dbt.adapters.duckdb.impl import DuckDBAdapter

    assert resources.dbt_core_version() == importlib.metadata.version("dbt-core")
    assert list(inspect.signature(BaseAdapter.cleanup_connections).parameters) == ["self"]
    assert "self.connections = self.ConnectionManager(" in inspect.getsource(BaseAdapter.__init__)
    assert DuckDBAdapter.ConnectionManager is DuckDBConnectionManager
    assert isinstance(inspect.getattr_static(DuckDBConnectionManager, "close_all_connections"), classmethod)
    assert DuckDBAdapter.__name__ == "DuckDBAdapter"  # is_duckdb_adapter compares the name
    assert resources.is_duckdb_adapter(None) is False
    resources.release_warehouse(None)  # a run without an in-process adapter has nothing to release


def test_dbt_calls_its_loggers_before_callbacks_and_measures_through_these_names():
    """What `dagctl-dbt` relies on in dbt's own process (dagctl_dagster/dbt/internals/measuring.py)."""
    from dbt.adapters.base.column import Column
    from dbt.adapters.factory import FACTORY, AdapterContainer
    from dbt.cli.main import dbtRunner
    from dbt.events.logging import setup_event_logger
    from dbt.events.types import JinjaLogInfo
    from dbt_common.events.event_manager import EventManager
    from dbt_common.events.event_manager_client import get_event_manager
    from dbt_common.events.functions import fire_event

    fire = inspect.getsource(EventManager.fire_event)
    assert fire.index("for logger in self.loggers:") < fire.index("for callback in self.callbacks:")
    assert "if logger.filter(msg):" in fire and "logger.write_line(msg)" in fire
    assert "event_manager.callbacks = callbacks.copy()" in inspect.getsource(setup_event_logger)
    assert list(inspect.signature(dbtRunner).parameters) == ["manifest", "callbacks"]
    assert isinstance(FACTORY, AdapterContainer) and isinstance(FACTORY.adapters, dict)
    assert "dtype" in {f.name for f in dataclasses.fields(Column)}
    assert JinjaLogInfo(msg="{}", node_info={"unique_id": "model.p.m"}).node_info.unique_id == "model.p.m"
    assert isinstance(get_event_manager(), EventManager) and callable(fire_event)
    from dbt.adapters.base.impl import BaseAdapter
    from dbt.adapters.sql.impl import SQLAdapter

    assert list(inspect.signature(BaseAdapter.connection_named).parameters)[:2] == ["self", "name"]
    assert list(inspect.signature(SQLAdapter.get_columns_in_relation).parameters) == ["self", "relation"]
    assert list(inspect.signature(BaseAdapter.execute).parameters)[:3] == ["self", "sql", "auto_begin"]
    assert "fetch" in inspect.signature(BaseAdapter.execute).parameters
    from dbt.adapters.base.relation import BaseRelation
    from dbt.adapters.duckdb.impl import DuckDBAdapter
    from dbt_common.events.base_types import EventMsg

    assert issubclass(DuckDBAdapter.Relation, BaseRelation)
    assert list(inspect.signature(BaseRelation.create).parameters)[:3] == ["database", "schema", "identifier"]
    assert {"info", "data"} <= set(EventMsg.__annotations__)  # msg.info.name, msg.data.node_info


def test_dbt_fires_each_statements_query_events_on_its_thread_naming_its_node():
    """What `dagctl-dbt`'s query counting (NodeCost) reads of dbt's SQL connection manager."""
    from dbt.adapters.events.types import SQLQuery, SQLQueryStatus
    from dbt.adapters.sql.connections import SQLConnectionManager

    add_query = inspect.getsource(SQLConnectionManager.add_query)
    sent, ran, done = (add_query.index(s) for s in ("SQLQuery(", "pre = time.perf_counter()", "SQLQueryStatus("))
    assert sent < ran < done, "SQLQuery before the statement, SQLQueryStatus after it, in one call"
    assert "elapsed=time.perf_counter() - pre" in add_query and "node_info=get_node_info()" in add_query
    assert 'self.add_query("BEGIN", auto_begin=False)' in inspect.getsource(SQLConnectionManager.add_begin_query)
    assert 'self.add_query("COMMIT", auto_begin=False)' in inspect.getsource(SQLConnectionManager.add_commit_query)
    query = SQLQuery(conn_name="model.p.m", sql="select 1", node_info={"unique_id": "model.p.m"})
    status = SQLQueryStatus(status="OK", elapsed=0.25, node_info={"unique_id": "model.p.m"})
    assert (query.conn_name, query.sql, query.node_info.unique_id) == ("model.p.m", "select 1", "model.p.m")
    assert status.elapsed == 0.25 and status.node_info.unique_id == "model.p.m"
    assert type(query).__name__ == "SQLQuery" and type(status).__name__ == "SQLQueryStatus"


def _built_by(executable: Path, project: Path, warehouse: Path) -> tuple[int, list[dict], dict[str, str]]:
    """Exit status, JSON log lines and each node's status in run_results.json of `<executable> build`."""
    done = subprocess.run(
        [str(executable), "build", "--log-format", "json", "--threads", "3"],
        cwd=project,
        env={**os.environ, "DBT_EXAMPLE_DB": str(warehouse)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    results = json.loads((project / "target" / "run_results.json").read_text())["results"]
    return done.returncode, lines, {r["unique_id"]: r["status"] for r in results}


def _tables(warehouse: Path) -> dict[str, list[tuple]]:
    import duckdb

    with duckdb.connect(str(warehouse), read_only=True) as con:
        names = [r[0] for r in con.sql("select table_name from information_schema.tables").fetchall()]
        return {name: sorted(con.sql(f"select * from main.{name}").fetchall(), key=repr) for name in names}


@pytest.mark.timeout(600)
def test_dagctl_dbt_builds_what_dbt_builds_and_logs_each_measurement_before_its_result(tmp_path):
    copies = {}
    for name in ("dbt", "dagctl"):
        project = tmp_path / name
        shutil.copytree(EXAMPLE_DBT_PROJECT, project, ignore=shutil.ignore_patterns("target", "logs", "*.duckdb"))
        # One failing model: the same exit status and the same skipped downstream.
        (project / "models" / "marts" / "broken.sql").write_text(
            "select cast('x' as integer) as n from {{ ref('orders') }}\n"
        )
        copies[name] = project
    native = _built_by(own_dbt_executable(), copies["dbt"], tmp_path / "dbt.duckdb")
    ours = _built_by(measuring.measuring_dbt_executable(), copies["dagctl"], tmp_path / "dagctl.duckdb")

    assert native[0] == ours[0] == 1
    assert ours[2] == native[2] and native[2]["model.dbt_example.broken"] == "error"
    assert _tables(tmp_path / "dagctl.duckdb") == _tables(tmp_path / "dbt.duckdb")

    lines = ours[1]
    results = {
        line["data"]["node_info"]["unique_id"]: index
        for index, line in enumerate(lines)
        if line["info"]["name"] in measuring._RESULT_EVENTS and line["data"]["node_info"]["node_status"] == "success"
    }
    measured = {
        line["data"]["node_info"]["unique_id"]: (
            index,
            measuring.Measurement.from_logged(json.loads(line["info"]["msg"])),
        )
        for index, line in enumerate(lines)
        if line["info"]["name"] == "JinjaLogInfo"
    }
    assert set(measured) == set(results) and len(results) == 9
    for unique_id, (index, measurement) in measured.items():
        assert index < results[unique_id], f"{unique_id}: measured after dbt logged its result"
        assert measurement is not None and measurement.columns and measurement.row_count is not None, unique_id
    assert measured["model.dbt_example.orders"][1].row_count == 200
    assert ("order_date", "DATE") in measured["model.dbt_example.orders"][1].columns
    assert not any(line["info"]["name"] == "JinjaLogInfo" for line in native[1])


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
    resources._SUBPROCESS_VERSIONS.pop(str(other), None)

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
        for value in resources._ordered_map(items(), slow_for_even, threads=2):
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
def test_postgres_measurements_arrive_in_order_without_spinning_while_dbt_builds(tmp_path, dagster_home, postgres_url):
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
    # Columns with the warehouse's types, for the view too (a catalog query, no scan).
    schemas = {m.asset_key.path[-1]: m.metadata["dagster/column_schema"].value for m in materializations}
    assert {name: [(c.name, c.type) for c in schema.columns] for name, schema in schemas.items()} == {
        "three_rows": [("id", "integer")],
        "slow": [("id", "integer")],
        "as_view": [("id", "integer")],
    }
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
    for node in (node for path in DBT_SEAM.glob("*.py") for node in ast.walk(ast.parse(path.read_text()))):
        if isinstance(node, ast.ImportFrom) and node.module and library.owns(node.module):
            used.update(alias.name for alias in node.names if (node.module, alias.name) not in library.public_imports)
        elif isinstance(node, ast.Attribute) and node.attr in library.private_names | library.internal_members:
            used.add(node.attr)
        elif isinstance(node, ast.Constant) and node.value in library.private_names | library.internal_members:
            used.add(node.value)
    assert used, "the check found nothing: it no longer reads the seam"
    assert sorted(name for name in used if name not in pinned) == []
