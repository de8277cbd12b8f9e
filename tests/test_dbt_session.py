"""dbt's run session under the claim-aware executor, on the bundled dbt example (DuckDB):
the executor finds it among the run's resources, dbt's ``--threads`` is the run's own bound
on concurrent steps, and terminating the run stops the dbt process and fails the build step
as stopped."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path

import dagster as dg
import psutil
import pytest
from conftest import venv_command
from dagster import DagsterEventType, DagsterInstance
from projects import sqlmesh_jobs
from test_dbt_factory import OP_NAME, PROJECT, dbt_only_repo
from waiting import wait_for

from dagctl_dagster.config import load_config
from dagctl_dagster.execution.claims import ClaimStore
from dagctl_dagster.execution.framework import RunFramework
from dagctl_dagster.run_identity import JobKind, job_name

JOB = f"{PROJECT}_run"
DBT_CLIS = ("dbt", "dagctl-dbt")
# Never ends by itself: DuckDB counts to a trillion.
SLOW_MODEL = (
    "{{ config(materialized='table') }}\nselect count(*) as n from range(1000000000000) as t(x) where x % 7 = 3\n"
)


@pytest.fixture
def repo(tmp_path: Path, monkeypatch) -> Path:
    repo = dbt_only_repo(tmp_path / "repo")
    monkeypatch.setenv("DBT_EXAMPLE_DB", str(tmp_path / "warehouse.duckdb"))
    monkeypatch.delenv("DAGSTER_DBT_PARSE_PROJECT_ON_LOAD", raising=False)
    return repo


@pytest.fixture(scope="module")
def unchanged_copy(tmp_path_factory) -> Path:
    """One copy of the example for the tests that leave its models as they are: the first load
    parses it, the next reuses that manifest (same files, same ``env_var()`` values)."""
    return dbt_only_repo(tmp_path_factory.mktemp("dbt_session") / "repo")


@pytest.fixture
def unchanged_repo(unchanged_copy: Path, monkeypatch) -> Path:
    monkeypatch.setenv("DBT_EXAMPLE_DB", str(unchanged_copy.parent / "warehouse.duckdb"))
    monkeypatch.delenv("DAGSTER_DBT_PARSE_PROJECT_ON_LOAD", raising=False)
    return unchanged_copy


@pytest.mark.timeout(300)
def test_the_dbt_run_job_carries_a_session_the_executor_finds(unchanged_repo: Path):
    repo = unchanged_repo
    from dagctl_dagster import load_definitions

    loaded = load_config(repo / ".dagctl" / "config.yaml")
    job = load_definitions(loaded.path).resolve_job_def(job_name(loaded.config.project(PROJECT), JobKind.RUN))
    with dg.build_resources(job.resource_defs) as resources:
        sessions = [getattr(resources, key) for key in job.resource_defs]
    assert [s for s in sessions if isinstance(s, RunFramework) and PROJECT in s.projects]


@pytest.mark.timeout(300)
def test_dbt_threads_are_the_runs_max_concurrent_from_executor_config(
    unchanged_repo: Path, dagster_home: Path, monkeypatch
):
    repo = unchanged_repo
    monkeypatch.setenv("MAX_CONCURRENT_MODELS", "4")
    monkeypatch.setenv("DAGCTL_TEST_CONFIG", str(repo / ".dagctl" / "config.yaml"))
    monkeypatch.setenv("DAGCTL_TEST_JOB", JOB)
    with DagsterInstance.get() as instance:
        result = dg.execute_job(
            dg.reconstructable(sqlmesh_jobs.get_job),
            instance,
            run_config={"execution": {"config": {"max_concurrent": 2}}},
            raise_on_error=False,
        )
    assert result.success
    (invocation_dir,) = (repo / "examples" / "dbt_project" / "target").glob(f"{OP_NAME}-{result.run_id[:7]}-*")
    run_results = json.loads((invocation_dir / "run_results.json").read_text())
    assert run_results["args"]["threads"] == 2


def materialized(home: Path, asset: str) -> bool:
    """Read the run's SQLite event log directly: a second instance opened while the run worker
    creates its storage would race its schema migration."""
    for run_db in (home / "history" / "runs").glob("*.db"):
        try:
            with sqlite3.connect(f"file:{run_db}?mode=ro", uri=True) as con:
                query = "select count(*) from event_logs where dagster_event_type = ? and asset_key like ?"
                if con.execute(query, ("ASSET_MATERIALIZATION", f'%"{asset}"%')).fetchone()[0]:
                    return True
        except sqlite3.Error:
            continue
    return False


def dbt_processes(parent: int) -> list[psutil.Process]:
    try:
        children = psutil.Process(parent).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        try:
            # `dagctl-dbt` on DuckDB: dbt's CLI measuring in its own process
            if "build" in child.cmdline() and any(Path(part).name in DBT_CLIS for part in child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.timeout(600)
def test_terminating_a_run_stops_dbt_and_the_build_fails_as_stopped(repo: Path, dagster_home: Path):
    (repo / "examples" / "dbt_project" / "models" / "slow.sql").write_text(SLOW_MODEL)
    process = subprocess.Popen(
        [venv_command("dagster"), "job", "execute", "-f", "definitions.py", "-j", JOB],
        cwd=repo,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # Every model but the slow one is built: dbt is now only waiting on the slow query.
        wait_for(
            lambda: materialized(dagster_home, "daily_revenue") and dbt_processes(process.pid),
            "dbt to build every model but the slow one",
            timeout=300,
            every=0.5,
            alive=lambda: f"the run exited ({process.returncode})" if process.poll() is not None else None,
        )
        dbt = dbt_processes(process.pid)
        process.send_signal(signal.SIGINT)  # the run worker only: stopping dbt is the run's job
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()

    assert not [p for p in dbt if alive(p)], "the dbt process outlived its run"
    with DagsterInstance.get() as instance:
        [run] = instance.get_runs()
        step_events = [
            entry.dagster_event
            for entry in instance.all_logs(run.run_id)
            if entry.dagster_event and entry.dagster_event.step_key == OP_NAME
        ]
        claims = ClaimStore.from_environment(instance=instance).list_claims()
    assert run.status in (dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.FAILURE), output[-4000:]
    step_outcomes = [
        e for e in step_events if e.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE)
    ]
    assert [e.event_type for e in step_outcomes] == [DagsterEventType.STEP_FAILURE], output[-4000:]
    description = step_outcomes[0].step_failure_data.user_failure_data.description
    assert "the run was terminated" in description
    built = {e.asset_key.path[-1] for e in step_events if e.event_type == DagsterEventType.ASSET_MATERIALIZATION}
    assert "daily_revenue" in built and "slow" not in built
    assert claims == []
