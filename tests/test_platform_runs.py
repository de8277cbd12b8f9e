"""dbt claims and one run across projects, on PostgreSQL (warehouse, Dagster storage, claims).

Runs that overlap another run or are watched while they build are real `dagster asset
materialize` processes; a run whose outcome alone is read runs in this process, as that CLI
runs it (`dg.execute_job` of the location's asset job with its claim-aware executor): a CLI
process of its own would only add its start and a second load of the definitions."""

from __future__ import annotations

import collections
import os
import subprocess
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from conftest import venv_command
from dagster import DagsterEventType, DagsterInstance
from in_process_runs import materialize_in_process
from projects import platform_repo
from projects.deployment import plan_without_backfill
from waiting import wait_for

from dagctl_dagster.execution.claims import ClaimStore
from dagctl_dagster.names import ExecutorSummary
from dagctl_dagster.run_identity import PAUSE_JOB, PAUSE_OP


@pytest.fixture
def platform(tmp_path: Path, postgres_url: str, postgres_dagster_home: Path, monkeypatch) -> Path:
    repo = platform_repo.create_repository(tmp_path / "repo", postgres_url)
    for name, value in platform_repo.environment(postgres_url).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DAGCTL_CLAIMS_URL", raising=False)
    monkeypatch.delenv("MAX_CONCURRENT_MODELS", raising=False)
    plan_without_backfill(repo / "up_project")
    return repo


def materialize(repo: Path, keys: list[str], **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [venv_command("dagster"), "asset", "materialize", "-f", "definitions.py", "--select", ",".join(keys)],
        cwd=repo,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(process: subprocess.Popen, timeout: float = 400) -> str:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-6000:]
    return output


def run_events(instance: DagsterInstance, run_id: str) -> list[dg.EventLogEntry]:
    return list(instance.all_logs(run_id))


def summary_of(entries: list[dg.EventLogEntry]) -> ExecutorSummary:
    [summary] = [
        ExecutorSummary.from_metadata(e.dagster_event.engine_event_data.metadata)
        for e in entries
        if e.dagster_event and (e.message or "").startswith("dagctl run summary")
    ]
    return summary


@pytest.mark.timeout(600)
def test_a_dbt_source_on_a_sqlmesh_model_is_one_asset_and_one_run_builds_it_first(platform: Path, postgres_url: str):
    from dagctl_dagster import load_definitions

    graph = load_definitions(platform / ".dagctl" / "config.yaml").resolve_asset_graph()
    downstream = dg.AssetKey(["marts", "from_sqlmesh"])
    assert graph.get(downstream).parent_keys == {dg.AssetKey(["upstream", "orders"])}
    assert dg.AssetKey(["up", "orders"]) not in graph.get_all_asset_keys()  # no second key for it

    run_id, output = materialize_in_process(platform, ["upstream/orders", "marts/from_sqlmesh"])
    assert "Claimed 2 of 2 models" in output  # one batch of claims spanning both projects
    with DagsterInstance.get() as instance:
        [run] = instance.get_runs()
        assert run.run_id == run_id
        entries = run_events(instance, run.run_id)
    order = [
        e.dagster_event.asset_key.to_user_string()
        for e in entries
        if e.dagster_event and e.dagster_event.event_type == DagsterEventType.ASSET_MATERIALIZATION
    ]
    assert order == ["upstream/orders", "marts/from_sqlmesh"]
    sqlmesh_done = next(
        e.timestamp
        for e in entries
        if e.step_key == "up__upstream__orders" and e.dagster_event and e.dagster_event.is_step_success
    )
    dbt_started = next(
        e.timestamp
        for e in entries
        if e.step_key
        and "marts" in e.step_key
        and e.dagster_event
        and e.dagster_event.event_type == DagsterEventType.STEP_START
    )
    assert sqlmesh_done <= dbt_started
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM marts.from_sqlmesh")).scalar() == 2
    engine.dispose()


@pytest.mark.timeout(600)
def test_overlapping_dbt_runs_never_build_a_model_twice(platform: Path, postgres_url: str):
    """Run 1 builds slow_a (sleeping) and b; run 2, started meanwhile, wants slow_a, b, c, d:
    it leaves out slow_a and b (held by run 1) and d (downstream of slow_a), and builds c."""
    store = ClaimStore(postgres_url)
    try:
        with platform_repo.slow_a_held(postgres_url):
            first = materialize(platform, ["marts/slow_a", "marts/b"])
            wait_for(
                lambda: any(c.model == "marts/slow_a" for c in store.list_claims()),
                "run 1 to claim slow_a",
                timeout=120,
                every=0.3,
                alive=lambda: "run 1 exited" if first.poll() is not None else None,
            )
            holder = next(c.run_id for c in store.list_claims() if c.model == "marts/slow_a")
            second = materialize(platform, ["marts/slow_a", "marts/b", "marts/c", "marts/d"])
            second_output = finish(second)
        finish(first)
        assert store.list_claims() == []
    finally:
        store.dispose()

    built = platform_repo.builds(postgres_url)
    counts = collections.Counter(model for model, _ in built)
    assert counts == {"slow_a": 1, "b": 1, "c": 1}  # never twice; d left out with slow_a
    invocations = {model: invocation for model, invocation in built}
    assert invocations["slow_a"] == invocations["b"] != invocations["c"]
    assert f"marts/slow_a (claimed by run {holder})" in second_output
    with DagsterInstance.get() as instance:
        second_run = next(r for r in instance.get_runs() if r.run_id != holder)
        summary = summary_of(run_events(instance, second_run.run_id))
    assert summary.models_left_out == 2 and summary.executed == 1


def run_pause_job(job: dg.JobDefinition, **config: str) -> None:
    """The location's `dagctl_models_pause` job (its executor is in-process), run as the Launchpad
    runs it on the test's instance: what is tested is the pause, not a CLI, so no process of its own."""
    with DagsterInstance.get() as instance:
        result = job.execute_in_process(run_config={"ops": {PAUSE_OP: {"config": config}}}, instance=instance)
    assert result.success


@pytest.mark.timeout(600)
def test_a_model_paused_from_dagster_is_left_out_of_dbt_build_with_its_downstream(platform: Path, postgres_url: str):
    from dagctl_dagster import load_definitions

    pause_job = load_definitions(platform / ".dagctl" / "config.yaml").resolve_job_def(PAUSE_JOB)
    run_pause_job(pause_job, project="marts", model="slow_a", action="pause", reason="INC-9", by="bob")
    _, output = materialize_in_process(platform, ["marts/slow_a", "marts/b", "marts/c", "marts/d"])
    assert "marts/slow_a (paused by bob since" in output and "INC-9" in output
    assert [model for model, _ in platform_repo.builds(postgres_url)] == ["c"]  # b and d are downstream

    run_pause_job(pause_job, project="marts", model="slow_a", action="resume")
    store = ClaimStore(postgres_url)
    try:
        from dagctl_dagster.execution.pauses import PauseStore

        assert PauseStore.of(store).list() == []
    finally:
        store.dispose()


@pytest.mark.timeout(600)
def test_a_dbt_builds_claims_are_released_as_its_nodes_finish(platform: Path, postgres_url: str):
    """c finishes at once, slow_a sleeps: while the build still runs, only slow_a is held."""
    store = ClaimStore(postgres_url)
    try:
        seen: set[frozenset[str]] = set()

        def only_slow_a_held_after_c() -> bool:
            held = frozenset(c.model for c in store.list_claims())
            seen.add(held)
            return held == {"marts/slow_a"} and ("c",) in [(m,) for m, _ in platform_repo.builds(postgres_url)]

        with platform_repo.slow_a_held(postgres_url):
            run = materialize(platform, ["marts/c", "marts/slow_a"])
            wait_for(
                only_slow_a_held_after_c,
                "only slow_a to be held once c is built",
                timeout=180,
                every=0.3,
                alive=lambda: "the build exited" if run.poll() is not None else None,
                explain=lambda: f"claims seen while the build ran: {seen}",
            )
            assert frozenset({"marts/slow_a"}) in seen, f"claims seen while the build ran: {seen}"
            assert [m for m, _ in platform_repo.builds(postgres_url)] == ["c"]  # slow_a still building
        finish(run)
        assert store.list_claims() == []
    finally:
        store.dispose()
