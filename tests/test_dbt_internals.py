"""The dbt seam (`dagctl_dagster/dbt/internals.py`), pinned to the dagster-dbt it was written for.

What a dbt step no longer does before dbt starts: a `dbt --version` subprocess (the version
comes from the installed dbt-core when the executable is this environment's) and, on
DuckDB, dbt's in-process adapter. On other warehouses row counts still arrive, in dbt's
order, without the step thread spinning while dbt builds.
"""

from __future__ import annotations

import inspect
import json
import resource
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


def test_the_seam_states_the_dagster_dbt_range_pyproject_declares():
    assert_seam_covers("dagster-dbt", internals.DAGSTER_DBT_VERSIONS, internals.TESTED_DAGSTER_DBT_MINOR)


def test_the_seam_is_pinned_to_the_installed_dagster_dbt():
    """Fails when dagster-dbt changes what the seam overrides or calls."""
    assert ".".join(dagster_dbt.__version__.split(".")[:2]) == internals.TESTED_DAGSTER_DBT_MINOR
    assert isinstance(inspect.getattr_static(DbtCliResource, "_cli_version"), cached_property)
    assert list(inspect.signature(DbtCliResource._initialize_dbt_core_adapter).parameters) == ["self", "args"]
    cli_source = inspect.getsource(DbtCliResource.cli)
    assert "self._cli_version.major < 2" in cli_source
    assert "adapter = self._initialize_dbt_core_adapter(args)" in cli_source
    fetch = dbt_event_iterator._fetch_row_count_metadata
    assert list(inspect.signature(fetch).parameters) == ["invocation", "event"]


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
