"""Overlapping runs in separate processes on PostgreSQL: claims keep every interval single.

Each run is `dagster job execute` in its own process, on a Dagster instance stored in
PostgreSQL (so claims live there too), with the SQLMesh warehouse and state in PostgreSQL.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import fresh_database, instance_home, venv_command
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from projects import overlap_project
from projects.deployment import plan_without_backfill
from waiting import wait_for

from dagctl_dagster.execution.claims import ClaimStore

JOB = "overlap_run"
KILLED_RUN_LEASE_SECONDS = 15


@dataclass(frozen=True)
class PlannedOverlap:
    """The overlap project planned once per module: its repository, and its database (Dagster's
    storage created, prod planned, the audit table) saved as ``template`` under another name."""

    repo: Path
    url: str
    name: str
    template: str


@pytest.fixture(scope="module")
def planned_overlap(postgres_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PlannedOverlap]:
    """Each test used to create the database, Dagster's tables and the project, and plan prod:
    the same state every time. SQLMesh's state names the database (its catalog), so each test's
    copy takes the planned database's name back."""
    root = tmp_path_factory.mktemp("planned_overlap")
    name = f"t_{uuid.uuid4().hex[:12]}"
    template = f"{name}_planned"
    url = sa.engine.make_url(postgres_server_url).set(database=name).render_as_string(hide_password=False)
    admin = sa.create_engine(postgres_server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        repo = overlap_project.create_repository(root / "repo", url)
        DagsterInstance.from_config(str(instance_home(root / "dagster_home", url))).dispose()
        with pytest.MonkeyPatch.context() as monkeypatch:
            monkeypatch.setenv("OVERLAP_PG_URL", url)
            plan_without_backfill(repo / "overlap_project")
        with admin.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" RENAME TO "{template}"'))
        yield PlannedOverlap(repo=repo, url=url, name=name, template=template)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{template}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url(planned_overlap: PlannedOverlap, postgres_server_url: str) -> Iterator[str]:
    """A fresh copy of the planned database, under the name the plan used, dropped afterwards."""
    with fresh_database(postgres_server_url, name=planned_overlap.name, template=planned_overlap.template) as url:
        yield url


@pytest.fixture
def overlap_repo(
    planned_overlap: PlannedOverlap, tmp_path: Path, postgres_url: str, postgres_dagster_home: Path, monkeypatch
) -> Path:
    """A copy of the planned repository on a copy of the planned database."""
    repo = Path(shutil.copytree(planned_overlap.repo, tmp_path / "repo"))
    monkeypatch.setenv("OVERLAP_PG_URL", postgres_url)
    monkeypatch.delenv("MAX_CONCURRENT_MODELS", raising=False)
    monkeypatch.delenv("DAGCTL_CLAIMS_URL", raising=False)
    return repo


def launch_into_slow_model(repo: Path, marker: Path) -> tuple[subprocess.Popen, Path]:
    """A run, one model at a time, once it is inside m_0_0, and the gate file that ends m_0_0:
    m_0_0 holds until the test has changed what it changes mid-run and touches the gate."""
    gate = marker.with_name(marker.name + ".gate")
    run = launch(
        repo,
        MAX_CONCURRENT_MODELS="1",
        OVERLAP_SLOW_MODEL="m_0_0",
        OVERLAP_SLOW_MARKER=str(marker),
        OVERLAP_SLOW_GATE=str(gate),
        OVERLAP_SLOW_SECONDS="240",
    )
    try:
        wait_for(marker.exists, "the run to reach its slow model", timeout=240, every=0.1)
    except AssertionError:
        run.kill()
        raise AssertionError(finish(run, timeout=60)[-3000:]) from None
    return run, gate


def launch(repo: Path, *, run_config: Path | None = None, job: str = JOB, **env_overrides: str) -> subprocess.Popen:
    env = {**os.environ, **env_overrides}
    args = [venv_command("dagster"), "job", "execute", "-f", "definitions.py", "-j", job]
    if run_config:
        args += ["-c", str(run_config)]
    return subprocess.Popen(args, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, timeout: float = 300) -> str:
    output, _ = process.communicate(timeout=timeout)
    return output


def runs_by_pid(instance: DagsterInstance) -> dict[int, str]:
    """The executor announces its process id; map audit-table pids back to run ids."""
    mapping = {}
    for run in instance.get_runs(RunsFilter(job_name=JOB)):
        for record in instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT):
            data = record.dagster_event.event_specific_data
            if data and "pid" in (data.metadata or {}):
                mapping[data.metadata["pid"].value] = run.run_id
    return mapping


def skip_reasons(instance: DagsterInstance, run_id: str) -> list[str]:
    return [
        record.message
        for record in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT)
        if record.message.startswith("Skipping")
    ]


def assert_every_interval_exactly_once(postgres_url: str) -> list[tuple[str, int, str]]:
    rows = overlap_project.audit_rows(postgres_url)
    counts = collections.Counter((model, day) for model, _, day in rows)
    duplicates = {key: n for key, n in counts.items() if n > 1}
    assert not duplicates, f"intervals evaluated more than once: {duplicates}"
    assert set(counts) == overlap_project.expected_intervals()
    return rows


@pytest.mark.timeout(600)
def test_three_overlapping_runs_never_evaluate_an_interval_twice(overlap_repo: Path, postgres_url: str):
    processes = [launch(overlap_repo) for _ in range(3)]
    outputs = [finish(p) for p in processes]
    assert all(p.returncode == 0 for p in processes), "\n".join(o[-2000:] for o in outputs)
    final = launch(overlap_repo)
    final_output = finish(final)
    assert final.returncode == 0, final_output[-3000:]

    rows = assert_every_interval_exactly_once(postgres_url)
    with DagsterInstance.get() as instance:
        runs = instance.get_runs(RunsFilter(job_name=JOB))
        assert len(runs) == 4
        assert all(run.status == DagsterRunStatus.SUCCESS for run in runs)
        pid_to_run = runs_by_pid(instance)
        workers = {pid_to_run[pid] for _, pid, _ in rows}
        assert workers <= {run.run_id for run in runs}
        # Every run that skipped a model named the run holding it.
        for run in runs:
            for reason in skip_reasons(instance, run.run_id):
                holder = reason.split("claimed by run ")[1].split(".")[0].split(",")[0]
                assert holder in {r.run_id for r in runs} and holder != run.run_id
        assert ClaimStore.from_environment(instance=instance).list_claims() == []


@pytest.mark.timeout(600)
def test_killed_run_holds_its_claims_until_the_lease_expires(overlap_repo: Path, postgres_url: str, tmp_path: Path):
    marker = tmp_path / "slow.marker"
    run_config = tmp_path / "run_config.yaml"
    # m_1_0's lease is renewed as the victim starts it, just before the marker appears: the
    # victim dies with a whole lease left on it, the time the blocked run has to start and
    # find it held.
    run_config.write_text(f"execution:\n  config:\n    lease_seconds: {KILLED_RUN_LEASE_SECONDS}\n")
    victim = launch(
        overlap_repo,
        run_config=run_config,
        MAX_CONCURRENT_MODELS="1",
        OVERLAP_SLOW_MODEL="m_1_0",
        OVERLAP_SLOW_MARKER=str(marker),
        OVERLAP_SLOW_SECONDS="120",
    )
    try:
        wait_for(marker.exists, "the victim run to reach its slow model", timeout=240, every=0.05)
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=60)

    with DagsterInstance.get() as instance:
        [dead_run] = instance.get_runs(RunsFilter(job_name=JOB))
        store = ClaimStore.from_environment(instance=instance)
        held = {c.model for c in store.list_claims() if c.run_id == dead_run.run_id}
        assert "overlap/m_1_0" in held

        blocked_run = launch(overlap_repo)
        assert blocked_run.wait(timeout=300) == 0
        second = next(r for r in instance.get_runs(RunsFilter(job_name=JOB)) if r.run_id != dead_run.run_id)
        reasons = skip_reasons(instance, second.run_id)
        assert any(f"overlap/m_1_0 is claimed by run {dead_run.run_id}" in r for r in reasons), reasons

        def dead_claims_expired() -> bool:
            now = time.time()
            return all(c.expires_at.timestamp() < now for c in store.list_claims() if c.run_id == dead_run.run_id)

        wait_for(dead_claims_expired, "the dead run's leases to expire", timeout=90, every=0.2)
        recovery = launch(overlap_repo)
        output = finish(recovery)
        assert recovery.returncode == 0, output[-3000:]
        store.dispose()
    rows = assert_every_interval_exactly_once(postgres_url)
    assert any(model == "m_1_0" for model, _, _ in rows)


@pytest.mark.timeout(600)
def test_environment_change_mid_run_stops_new_models(overlap_repo: Path, postgres_url: str, tmp_path: Path):
    run, gate = launch_into_slow_model(overlap_repo, tmp_path / "slow.marker")
    overlap_project.write_model(overlap_repo / "overlap_project", "m_2_2", version=2)
    plan_without_backfill(overlap_repo / "overlap_project")
    gate.touch()  # m_0_0 finishes only once the new plan is applied
    output = finish(run)
    assert run.returncode == 0, output[-3000:]

    with DagsterInstance.get() as instance:
        [first] = instance.get_runs(RunsFilter(job_name=JOB))
        reasons = skip_reasons(instance, first.run_id)
        assert any("environment changed" in r for r in reasons), reasons
        succeeded = {
            record.step_key for record in instance.all_logs(first.run_id, of_type=DagsterEventType.STEP_SUCCESS)
        }
    evaluated_in_first = {model for model, _, _ in overlap_project.audit_rows(postgres_url)}
    # the running model finished; nothing new started after the plan was applied
    assert "overlap__m_0_0" in succeeded
    assert "m_0_0" in evaluated_in_first
    assert len(evaluated_in_first) < len(overlap_project.model_names())

    follow_up = launch(overlap_repo)
    output = finish(follow_up)
    assert follow_up.returncode == 0, output[-3000:]
    assert_every_interval_exactly_once(postgres_url)


@pytest.mark.timeout(600)
def test_environment_removed_mid_run_fails_the_rest(overlap_repo: Path, postgres_url: str, tmp_path: Path):
    """Nobody re-planned: the environment vanished. Running models finish, the rest do not
    start, and the run is not green."""
    import sqlalchemy as sa

    run, gate = launch_into_slow_model(overlap_repo, tmp_path / "slow.marker")
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        removed = conn.execute(sa.text("DELETE FROM sqlmesh._environments WHERE name = 'prod'")).rowcount
    engine.dispose()
    assert removed == 1
    gate.touch()  # m_0_0 finishes only once the environment is gone
    output = finish(run)
    assert run.returncode != 0
    assert "was removed" in output
    with DagsterInstance.get() as instance:
        [first] = instance.get_runs(RunsFilter(job_name=JOB))
        assert first.status == DagsterRunStatus.FAILURE
        failures = [
            r.dagster_event.step_failure_data.error.message
            for r in instance.all_logs(first.run_id, of_type=DagsterEventType.STEP_FAILURE)
        ]
    assert failures and all("Not run: environment 'prod'" in m and "was removed" in m for m in failures), failures
    assert {model for model, _, _ in overlap_project.audit_rows(postgres_url)} == {"m_0_0"}
