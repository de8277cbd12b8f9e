"""Claims under faults: a run that loses its claims starts nothing more of those models.

Each scenario runs `dagster job execute` processes on one PostgreSQL (warehouse, SQLMesh
state, Dagster storage, claims) with the overlap project, whose models append one audit row
per evaluated interval. Run A is held inside its first batch (m_0_0's first interval) by a
gate file while the test injects the fault; the gate opens only once A can no longer own
the models, so A's one in-flight batch finishes before run B computes what is due (the
documented end of the guarantee: a batch already running when its claim is lost finishes).
Every scenario ends with a clean run and asserts no interval evaluated twice or never.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import venv_command
from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter
from projects import overlap_project
from tcp_proxy import TcpProxy
from test_overlapping_runs import (  # noqa: F401  (overlap_repo, planned_overlap, postgres_url are fixtures)
    JOB,
    assert_every_interval_exactly_once,
    finish,
    launch,
    overlap_repo,
    planned_overlap,
    postgres_url,
)
from waiting import wait_for

from dagctl_dagster.execution.claims import ClaimStore, ClaimStoreError
from dagctl_dagster.names import NOT_RUN_REASON_KEY, NotRunReason

SLOW_MODEL = "m_0_0"
FIRST_DAY = min(day for model, day in overlap_project.expected_intervals() if model == SLOW_MODEL)
LEASE_SECONDS = 6  # the shortest lease the executor accepts is 5 s
# The claim store's timeout where a test stalls the store (the default is 10 s): each stalled
# statement then gives up after 3 + 2 s instead of 12 s.
STORE_TIMEOUT_SECONDS = 3


@pytest.fixture
def gate(tmp_path: Path) -> dict[str, str]:
    """Env vars that hold run A inside m_0_0's first batch until the test opens the gate."""
    return {
        "MAX_CONCURRENT_MODELS": "1",
        "OVERLAP_SLOW_MODEL": SLOW_MODEL,
        "OVERLAP_SLOW_MARKER": str(tmp_path / "slow.marker"),
        "OVERLAP_SLOW_GATE": str(tmp_path / "slow.gate"),
        "OVERLAP_SLOW_SECONDS": "240",
    }


@pytest.fixture
def short_lease(tmp_path: Path) -> Path:
    run_config = tmp_path / "short_lease.yaml"
    run_config.write_text(f"execution:\n  config:\n    lease_seconds: {LEASE_SECONDS}\n")
    return run_config


@pytest.fixture
def short_lease_and_store_timeout(tmp_path: Path) -> Path:
    run_config = tmp_path / "short_lease_store_timeout.yaml"
    run_config.write_text(
        f"execution:\n  config:\n    lease_seconds: {LEASE_SECONDS}\n"
        f"    claims_timeout_seconds: {STORE_TIMEOUT_SECONDS}\n"
    )
    return run_config


@pytest.fixture
def claims_proxy(postgres_url: str) -> Iterator[tuple[TcpProxy, str]]:
    """A proxy to the claim store's server, and the claims URL through it (same database)."""
    url = sa.engine.make_url(postgres_url)
    socket_dir = url.query.get("host")
    port = url.port or 5432
    upstream = f"{socket_dir}/.s.PGSQL.{port}" if socket_dir else (url.host, port)
    with TcpProxy(upstream) as proxy:
        proxied = url.difference_update_query(["host"]).set(host="127.0.0.1", port=proxy.port)
        yield proxy, proxied.render_as_string(hide_password=False)


# -- helpers -------------------------------------------------------------------------------


def start_gated_run(repo: Path, gate: dict[str, str], **kwargs) -> tuple[subprocess.Popen, str]:
    """Run A, once it sits inside its gated batch: the process and its run id."""
    process = launch(repo, **gate, **kwargs)
    try:
        wait_for(
            lambda: Path(gate["OVERLAP_SLOW_MARKER"]).exists(), "run A to reach its gated batch", timeout=240, every=0.2
        )
    except AssertionError:
        process.kill()
        raise AssertionError(finish(process, timeout=60)[-3000:]) from None
    with DagsterInstance.get() as instance:
        [run] = instance.get_runs(RunsFilter(job_name=JOB))
    return process, run.run_id


def start_gated_run_through_proxy(
    repo: Path, gate: dict[str, str], short_lease: Path, claims_proxy: tuple[TcpProxy, str]
) -> tuple[TcpProxy, subprocess.Popen, str]:
    """Run A with a short lease, reaching the claim store through the proxy, inside its gated batch."""
    proxy, proxied_url = claims_proxy
    run_a, run_a_id = start_gated_run(repo, gate, run_config=short_lease, DAGCTL_CLAIMS_URL=proxied_url)
    return proxy, run_a, run_a_id


def finish_b_green_and_a_not(run_b: subprocess.Popen, run_a: subprocess.Popen) -> None:
    """B finishes first (A may still hold a batch B waits behind); B succeeds, A does not."""
    output_b = finish(run_b)
    output_a = finish(run_a)
    assert run_b.returncode == 0, output_b[-3000:]
    assert run_a.returncode != 0, output_a[-3000:]


def open_gate_and_wait_for_the_batch(gate: dict[str, str], postgres_url: str) -> None:
    Path(gate["OVERLAP_SLOW_GATE"]).touch()
    wait_for(
        lambda: (SLOW_MODEL, FIRST_DAY) in {(m, d) for m, _, d in overlap_project.audit_rows(postgres_url)},
        "run A's in-flight batch to finish",
        timeout=120,
        every=0.2,
    )


def wait_until_leases_expired(postgres_url: str, run_id: str) -> None:
    def expired() -> bool:
        claims = claims_of(postgres_url, run_id)
        return bool(claims) and all(c.expired for c in claims)

    wait_for(expired, f"run {run_id}'s leases to expire", timeout=4 * LEASE_SECONDS, every=0.2)


def wait_for_claim_event(run_id_known: str, timeout: float = 180) -> str:
    """The id of the run other than ``run_id_known``, once it has claimed its models."""

    def claimed() -> bool:
        try:
            other = run_id_of_other(run_id_known)
        except StopIteration:
            return False
        return any(m.startswith("Claimed ") for m in engine_messages(other))

    wait_for(claimed, "run B to claim its models", timeout=timeout, every=0.5)  # each poll opens an instance
    return run_id_of_other(run_id_known)


def claims_of(postgres_url: str, run_id: str):
    store = ClaimStore(postgres_url)
    try:
        return [c for c in store.list_claims() if c.run_id == run_id]
    finally:
        store.dispose()


def run_record(run_id: str) -> DagsterRun:
    with DagsterInstance.get() as instance:
        return instance.get_run_by_id(run_id)


def engine_messages(run_id: str) -> list[str]:
    with DagsterInstance.get() as instance:
        return [r.message for r in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT)]


def run_failure_message(run_id: str) -> str:
    with DagsterInstance.get() as instance:
        return " ".join(r.message for r in instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE))


def steps_failed_for_lost_claims(run_id: str) -> set[str]:
    """Steps that failed with skip reason `claim_lost` (not started, or stopped between batches)."""
    with DagsterInstance.get() as instance:
        records = instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE)
    found = set()
    for record in records:
        user_data = record.dagster_event.step_failure_data.user_failure_data
        reason = (user_data.metadata or {}).get(NOT_RUN_REASON_KEY) if user_data else None
        if getattr(reason, "value", reason) == NotRunReason.CLAIM_LOST.value:
            found.add(record.step_key)
    return found


def pid_of_run(run_id: str) -> int:
    """The run worker's process id, as the executor announced it (audit rows carry it)."""
    with DagsterInstance.get() as instance:
        for record in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
            data = record.dagster_event.event_specific_data
            if data and "pid" in (data.metadata or {}):
                return data.metadata["pid"].value
    raise AssertionError(f"run {run_id} announced no process id")


def run_id_of_other(first_run_id: str) -> str:
    with DagsterInstance.get() as instance:
        runs = instance.get_runs(RunsFilter(job_name=JOB))
    return next(r.run_id for r in runs if r.run_id != first_run_id)


def claims_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [venv_command("dagctl-dagster"), "claims", *args], capture_output=True, text=True, timeout=120
    )


def audit_rows_of_pid(postgres_url: str, pid: int) -> set[tuple[str, str]]:
    return {(model, day) for model, row_pid, day in overlap_project.audit_rows(postgres_url) if row_pid == pid}


def assert_final_clean_run(repo: Path, postgres_url: str) -> None:
    final = launch(repo)
    output = finish(final)
    assert final.returncode == 0, output[-3000:]
    assert_every_interval_exactly_once(postgres_url)


def assert_run_a_failed_for_lost_claims(run_id: str) -> None:
    """Not green; its gated model and every other ready model failed `claim_lost`, none succeeded
    (their downstream is blocked by those failures)."""
    run = run_record(run_id)
    assert run.status == DagsterRunStatus.FAILURE, run.status
    first_layer = {f"overlap__{m}" for m in overlap_project.model_names() if m.startswith("m_0_")}
    assert steps_failed_for_lost_claims(run_id) == first_layer
    with DagsterInstance.get() as instance:
        assert not instance.all_logs(run_id, of_type=DagsterEventType.STEP_SUCCESS)


def assert_a_stopped_after_its_batch_and_b_did_the_rest(overlap_repo: Path, postgres_url: str, run_a_id: str) -> None:
    """A evaluated only its in-flight batch and failed for its lost claims, saying so; the
    other run succeeded; a last clean run finds every interval evaluated exactly once."""
    assert audit_rows_of_pid(postgres_url, pid_of_run(run_a_id)) == {(SLOW_MODEL, FIRST_DAY)}
    assert_run_a_failed_for_lost_claims(run_a_id)
    assert any("lost its claims" in m for m in engine_messages(run_a_id)), engine_messages(run_a_id)
    assert run_record(run_id_of_other(run_a_id)).status == DagsterRunStatus.SUCCESS
    assert_final_clean_run(overlap_repo, postgres_url)


# -- 1. an operator releases a live run's claims ---------------------------------------------


@pytest.mark.timeout(600)
def test_forced_release_of_a_live_run_stops_it_and_no_interval_is_evaluated_twice(
    overlap_repo: Path, postgres_url: str, gate: dict[str, str]
):
    run_a, run_a_id = start_gated_run(overlap_repo, gate)
    held = {c.model for c in claims_of(postgres_url, run_a_id)}
    assert held == {f"overlap/{m}" for m in overlap_project.model_names()}

    refused = claims_cli("release", "--run-id", run_a_id)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "--force" in refused.stderr and "STARTED" in refused.stderr, refused.stderr
    assert {c.model for c in claims_of(postgres_url, run_a_id)} == held

    forced = claims_cli("release", "--run-id", run_a_id, "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert claims_of(postgres_url, run_a_id) == []

    # A's in-flight batch finishes (the documented limit); B starts right after and does the rest.
    open_gate_and_wait_for_the_batch(gate, postgres_url)
    finish_b_green_and_a_not(launch(overlap_repo), run_a)

    assert_a_stopped_after_its_batch_and_b_did_the_rest(overlap_repo, postgres_url, run_a_id)


# -- 2. run A is cut off from the claim store for longer than its lease ---------------------


@pytest.mark.timeout(600)
def test_run_partitioned_from_the_claim_store_past_its_lease_starts_nothing_more(
    overlap_repo: Path, postgres_url: str, gate: dict[str, str], short_lease: Path, claims_proxy
):
    proxy, run_a, run_a_id = start_gated_run_through_proxy(overlap_repo, gate, short_lease, claims_proxy)
    proxy.cut()
    wait_until_leases_expired(postgres_url, run_a_id)
    open_gate_and_wait_for_the_batch(gate, postgres_url)

    run_b = launch(overlap_repo)  # claims directly, during the cut
    run_b_id = wait_for_claim_event(run_a_id)
    proxy.restore()
    finish_b_green_and_a_not(run_b, run_a)

    messages = engine_messages(run_a_id)
    assert any(m.startswith("Could not renew this run's claims: claim store") for m in messages), messages
    assert run_b_id == run_id_of_other(run_a_id)
    assert_a_stopped_after_its_batch_and_b_did_the_rest(overlap_repo, postgres_url, run_a_id)


# -- 3. run A is paused (SIGSTOP) past its lease, B runs, A resumes ---------------------------


def launch_in_own_process_group(repo: Path, *, run_config: Path, **env: str) -> subprocess.Popen:
    args = [venv_command("dagster"), "job", "execute", "-f", "definitions.py", "-j", JOB, "-c", str(run_config)]
    return subprocess.Popen(
        args,
        cwd=repo,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@contextmanager
def paused(process: subprocess.Popen) -> Iterator[None]:
    os.killpg(process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(process.pid, signal.SIGCONT)


@pytest.mark.timeout(600)
def test_run_paused_past_its_lease_starts_nothing_more_after_it_resumes(
    overlap_repo: Path, postgres_url: str, gate: dict[str, str], short_lease: Path, claims_proxy
):
    """The pause falls between two batches: a paused batch would finish on resume (the
    documented limit), so A is paused while it waits for the claim store to confirm its next
    batch (the store stalled for that moment), then the store answers again while A sleeps."""
    proxy, proxied_url = claims_proxy
    marker = Path(gate["OVERLAP_SLOW_MARKER"])
    run_a = launch_in_own_process_group(overlap_repo, run_config=short_lease, **gate, DAGCTL_CLAIMS_URL=proxied_url)
    wait_for(marker.exists, "run A to reach its gated batch", timeout=240, every=0.2)
    with DagsterInstance.get() as instance:
        [run] = instance.get_runs(RunsFilter(job_name=JOB))
    run_a_id = run.run_id

    proxy.stall()
    open_gate_and_wait_for_the_batch(gate, postgres_url)
    time.sleep(1)  # A is now waiting for the store to confirm m_0_0's next batch
    with paused(run_a):
        wait_until_leases_expired(postgres_url, run_a_id)
        proxy.restore()
        run_b = launch(overlap_repo)
        output_b = finish(run_b)
        assert run_b.returncode == 0, output_b[-3000:]
    output_a = finish(run_a)
    assert run_a.returncode != 0, output_a[-3000:]

    assert_a_stopped_after_its_batch_and_b_did_the_rest(overlap_repo, postgres_url, run_a_id)


# -- 4. the claim store stalls: connections stay open, nothing comes back ---------------------


@pytest.mark.timeout(600)
def test_stalled_claim_store_fails_the_run_fast_and_says_so(
    overlap_repo: Path, postgres_url: str, gate: dict[str, str], short_lease_and_store_timeout: Path, claims_proxy
):
    proxy, run_a, run_a_id = start_gated_run_through_proxy(
        overlap_repo, gate, short_lease_and_store_timeout, claims_proxy
    )
    proxy.stall()
    open_gate_and_wait_for_the_batch(gate, postgres_url)
    try:
        output_a = finish(run_a, timeout=120)  # a bound against a hang, far above the store's timeouts
    except subprocess.TimeoutExpired:
        run_a.kill()
        raise AssertionError("run A hung on the stalled claim store:\n" + finish(run_a, 60)[-3000:]) from None
    assert run_a.returncode != 0, output_a[-3000:]

    assert audit_rows_of_pid(postgres_url, pid_of_run(run_a_id)) == {(SLOW_MODEL, FIRST_DAY)}
    assert_run_a_failed_for_lost_claims(run_a_id)
    messages = engine_messages(run_a_id)
    assert any(m.startswith("Could not renew this run's claims: claim store") and "timeout" in m for m in messages), (
        messages
    )
    proxy.restore()
    assert_final_clean_run(overlap_repo, postgres_url)


@pytest.mark.timeout(120, method="thread")  # without the client-side deadline the renewal never returns
def test_a_statement_on_a_stalled_pooled_connection_fails_with_a_timeout_and_the_store_recovers(claims_proxy):
    proxy, proxied_url = claims_proxy
    store = ClaimStore(proxied_url, lease_seconds=60, timeout_seconds=STORE_TIMEOUT_SECONDS)
    try:
        assert store.claim("run-a", ["m"]).won == ["m"]  # the pool now holds an open connection
        proxy.stall()
        with pytest.raises(ClaimStoreError) as raised:
            store.renew_held("run-a", ["m"])
        message = str(raised.value)
        assert f"did not answer within {STORE_TIMEOUT_SECONDS + 2}s" in message, message
        assert "timeout" in message and "127.0.0.1" in message, message
        proxy.restore()
        assert store.renew_held("run-a", ["m"]) == {"m"}
    finally:
        proxy.restore()
        store.dispose()
