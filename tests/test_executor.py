"""The claim-aware executor inside a real run: bounds, dependencies, failures, claims."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
from dagster import DagsterEventType, DagsterInstance
from projects import executor_jobs, release_jobs
from waiting import wait_for

from dagctl_dagster.execution.claims import ClaimStore


@pytest.fixture(params=["sqlite", "postgresql"])
def claims_backend(request, monkeypatch) -> str:
    """Runs the test with claims in the instance's SQLite storage, then in PostgreSQL."""
    if request.param == "postgresql":
        monkeypatch.setenv("DAGCTL_CLAIMS_URL", request.getfixturevalue("postgres_url"))
    return request.param


@pytest.fixture
def record(tmp_path: Path, monkeypatch) -> Path:
    path = tmp_path / "record.jsonl"
    monkeypatch.setenv("DAGCTL_TEST_RECORD", str(path))
    monkeypatch.delenv("MAX_CONCURRENT_MODELS", raising=False)
    return path


def run_job(getter, instance: DagsterInstance, run_config: dict | None = None) -> dg.ExecuteJobResult:
    return dg.execute_job(dg.reconstructable(getter), instance, run_config=run_config, raise_on_error=False)


def peak_concurrency(record: Path) -> int:
    events = []
    for line in record.read_text().splitlines():
        entry = json.loads(line)
        events.append((entry["t"], 1 if entry["event"] == "start" else -1))
    running = peak = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        running += delta
        peak = max(peak, running)
    return peak


def started_models(record: Path) -> set[str]:
    if not record.exists():
        return set()
    return {json.loads(line)["model"] for line in record.read_text().splitlines() if '"start"' in line}


def step_status(result: dg.ExecuteJobResult) -> dict[str, str]:
    status: dict[str, str] = {}
    for event in result.all_events:
        if event.is_step_success:
            status[event.step_key] = "success"
        elif event.is_step_failure:
            status[event.step_key] = "failure"
        elif event.is_step_skipped:
            status[event.step_key] = "skipped"
    return status


def engine_messages(result: dg.ExecuteJobResult) -> list[str]:
    return [e.message or "" for e in result.all_events if e.event_type == DagsterEventType.ENGINE_EVENT]


@pytest.mark.timeout(180)
def test_env_var_bounds_concurrency_at_two(record: Path, dagster_home: Path, monkeypatch):
    monkeypatch.setenv("MAX_CONCURRENT_MODELS", "2")
    with DagsterInstance.get() as instance:
        result = run_job(executor_jobs.get_wide_job, instance)
    assert result.success
    assert peak_concurrency(record) == 2
    assert len(started_models(record)) == 12


@pytest.mark.timeout(180)
def test_default_of_five_runs_models_concurrently(record: Path, dagster_home: Path):
    with DagsterInstance.get() as instance:
        result = run_job(executor_jobs.get_wide_job, instance)
    assert result.success
    assert 4 <= peak_concurrency(record) <= 5


@pytest.mark.timeout(180)
def test_run_config_overrides_env_var(record: Path, dagster_home: Path, monkeypatch):
    monkeypatch.setenv("MAX_CONCURRENT_MODELS", "5")
    with DagsterInstance.get() as instance:
        result = run_job(executor_jobs.get_wide_job, instance, {"execution": {"config": {"max_concurrent": 1}}})
    assert result.success
    assert peak_concurrency(record) == 1


@pytest.mark.timeout(180)
@pytest.mark.parametrize("value", ["0", "-3", "abc", "2.5"])
def test_invalid_env_var_fails_the_run_before_any_model(record: Path, dagster_home: Path, monkeypatch, value: str):
    monkeypatch.setenv("MAX_CONCURRENT_MODELS", value)
    with DagsterInstance.get() as instance:
        result = run_job(executor_jobs.get_wide_job, instance)
        failure = [e for e in result.all_events if e.event_type == DagsterEventType.RUN_FAILURE]
    assert not result.success
    assert started_models(record) == set()
    text = " ".join(str(e.event_specific_data) + (e.message or "") for e in result.all_events)
    assert "MAX_CONCURRENT_MODELS must be a positive integer" in text
    assert repr(value) in text
    assert failure


@pytest.mark.timeout(180)
def test_invalid_run_config_value_fails_before_any_model(record: Path, dagster_home: Path):
    with DagsterInstance.get() as instance:
        result = run_job(executor_jobs.get_wide_job, instance, {"execution": {"config": {"max_concurrent": 0}}})
    assert not result.success
    assert started_models(record) == set()
    text = " ".join(str(e.event_specific_data) for e in result.all_events)
    assert "`max_concurrent` must be a positive integer" in text


@pytest.mark.timeout(180)
def test_failure_blocks_exactly_its_downstream(record: Path, dagster_home: Path, monkeypatch, postgres_url: str):
    monkeypatch.setenv("DAGCTL_CLAIMS_URL", postgres_url)  # claims in PostgreSQL, as in production
    monkeypatch.setenv("DAGCTL_TEST_FAIL", "bad")
    monkeypatch.setenv("DAGCTL_TEST_FLAKY", "good")
    with DagsterInstance.get() as instance:
        result = run_job(executor_jobs.get_failure_job, instance)
        claims_left = ClaimStore.from_environment(instance=instance).list_claims()
    assert not result.success
    status = step_status(result)
    assert status["exec__bad"] == "failure"
    # `good` fails once and succeeds on its retry: retry policies keep working
    assert status["exec__good"] == "success"
    assert {status["exec__root"], status["exec__after_good"], status["exec__lone"]} == {"success"}
    ran = started_models(record)
    assert "after_bad" not in ran and "after_after" not in ran
    blocked = [m for m in engine_messages(result) if m.startswith("Blocked")]
    assert any("exec/after_bad" in m and "upstream exec/bad failed" in m for m in blocked)
    assert any("exec/after_after" in m and "upstream exec/bad failed" in m for m in blocked)
    summary = next(e for e in result.all_events if (e.message or "").startswith("dagctl run summary"))
    data = {k: v.value for k, v in summary.event_specific_data.metadata.items()}
    assert data["failed"] == 1 and data["blocked"] == 2 and data["executed"] == 4
    assert claims_left == []


@pytest.mark.timeout(180)
def test_models_claimed_by_another_run_are_skipped_with_their_downstream(
    record: Path, dagster_home: Path, monkeypatch, claims_backend: str
):
    with DagsterInstance.get() as instance:
        store = ClaimStore.from_environment(instance=instance)
        assert store.claim("other-live-run", ["exec/w0"]).won == ["exec/w0"]
        result = run_job(executor_jobs.get_wide_job, instance)
        remaining = {c.model: c.run_id for c in store.list_claims()}
    assert result.success
    status = step_status(result)
    assert status["exec__w0"] == "skipped"
    assert status["exec__join_a"] == "skipped"  # downstream of a model held elsewhere
    assert status["exec__join_b"] == "success"
    assert "w0" not in started_models(record)
    skip_logs = [e.message for e in result.all_events if e.step_key == "exec__w0" and e.message]
    assert any("claimed by run other-live-run" in m for m in skip_logs)
    assert remaining == {"exec/w0": "other-live-run"}  # ours released, theirs untouched


@pytest.mark.timeout(180)
def test_a_finished_models_claim_is_released_while_the_run_goes_on(
    record: Path, dagster_home: Path, monkeypatch, claims_backend: str
):
    """Claims of finished models are released in batches (within about a second), not at run end."""
    monkeypatch.setenv("MAX_CONCURRENT_MODELS", "2")  # fast and slow start together
    with DagsterInstance.get() as instance:
        result = run_job(release_jobs.get_release_job, instance)
        claims_left = ClaimStore.from_environment(instance=instance).list_claims()
    assert result.success
    seen = json.loads(record.read_text())
    # While `slow` was still running, `fast` had been released and `slow` was still held.
    assert seen["held_while_slow_ran"] == {"release/slow": seen["run_id"]}
    assert claims_left == []


@pytest.mark.timeout(240)
def test_terminating_a_run_stops_new_steps_and_releases_claims(record: Path, dagster_home: Path, tmp_path: Path):
    """Dagster terminates a local run worker with SIGINT; the executor must stop cleanly."""
    import os
    import signal
    import subprocess

    from conftest import REPO_ROOT, venv_command

    env = {**os.environ, "DAGCTL_TEST_SLEEP": "3", "MAX_CONCURRENT_MODELS": "2", "PYTHONPATH": str(REPO_ROOT / "tests")}
    process = subprocess.Popen(
        [venv_command("dagster"), "job", "execute", "-m", "projects.executor_jobs", "-a", "defs", "-j", "wide"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(lambda: started_models(record), "the run to start a model", timeout=180, every=0.2)
    process.send_signal(signal.SIGINT)
    process.wait(timeout=120)

    with DagsterInstance.get() as instance:
        [run] = instance.get_runs()
        claims = ClaimStore.from_environment(instance=instance).list_claims()
    assert run.status in (dg.DagsterRunStatus.CANCELED, dg.DagsterRunStatus.FAILURE)
    assert len(started_models(record)) < 12
    assert claims == []
