"""End to end on the stub cluster, deployed as docs/kubernetes.md deploys it (``tests/k8s_cluster.py``):
the code server of the Helm values runs as a pod (git-sync, then ``dagster code-server start``);
each run is launched through it, as the UI launches it, by DagctlK8sRunLauncher; its Job's pod
runs on the local kubelet (``tests/kubelet.py``) as the image's user, git-sync cloning the
commit the code server loaded, then ``dagster api execute_run``; the run ends in Dagster with
the models in the PostgreSQL warehouse.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import kubernetes_validate
import pytest
from conftest import fresh_database
from dagster._daemon.monitoring.run_monitoring import monitor_started_run
from k8s_cluster import NAMESPACE, Deployment, commit_all, deployment, git
from k8s_stub import SECRET_VALUES
from kubelet import process_alive
from waiting import wait_for

from dagctl_dagster.execution.claims import ClaimStore
from dagctl_dagster.k8s import layout
from dagctl_dagster.names import CODE_REVISION_TAG

pytestmark = pytest.mark.timeout(600)

SQLMESH_MODELS = {
    "customers",
    "daily_revenue",
    "incremental_orders",
    "item_revenue",
    "orders_enriched",
    "seed_orders",
    "tier_revenue",
}

# The launched process's environment dump: names in the run's logs, values only as hashes.
ENV_PROBE = """\
import hashlib
import os

import pandas as pd
from sqlmesh import model


@model("sqlmesh_example.env_probe", kind="FULL", columns={"name": "text", "sha256": "text"})
def execute(context, start, end, execution_time, **kwargs):
    names = sorted(os.environ)
    print("run worker environment: " + " ".join(names), flush=True)
    print(f"run worker uid {os.getuid()} gid {os.getgid()}", flush=True)
    digests = [hashlib.sha256(os.environ[name].encode()).hexdigest() for name in names]
    return pd.DataFrame({"name": names, "sha256": digests})
"""

# Waits until the file GATE_FILE names exists: a model that is mid-run for as long as a test needs.
GATE_MODEL_PATH = "examples/sqlmesh_project/models/gate.py"
GATE = """\
import os
import time

import pandas as pd
from sqlmesh import model


@model("sqlmesh_example.gate", kind="FULL", columns={"opened": "int"})
def execute(context, start, end, execution_time, **kwargs):
    marker = os.environ["GATE_FILE"]
    open(marker + ".waiting", "w").close()  # the test's directory is writable for the pod's user
    while not os.path.exists(marker):
        time.sleep(0.1)
    return pd.DataFrame({"opened": [1]})
"""


# A dbt model that fails when it runs (dbt parses it fine).
BROKEN_DBT_MODEL = "select * from a_table_that_does_not_exist\n"

# A SQLMesh model pushed after the code server loaded: the run must not know it.
PUSHED_LATER = """\
MODEL (name sqlmesh_example.pushed_later, kind FULL);
SELECT 1 AS pushed
"""


def _events(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [dg.serialize_value(entry) for entry in instance.all_logs(run_id)]


def _assert_no_secret_values(haystacks: list[str]) -> None:
    for name, value in SECRET_VALUES.items():
        leaks = [text[:120] for text in haystacks if value in text]
        assert leaks == [], f"{name}'s value found in {leaks}"


def _created_job(cluster, run_id: str) -> dict:
    [created] = [
        r.body
        for r in cluster.stub.requests_for("POST", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs")
        if r.body["metadata"]["name"] == cluster.job_name(run_id)
    ]
    return created


def _claims_of(cluster, run_id: str) -> list:
    store = ClaimStore.from_environment(instance=cluster.instance)
    try:
        return [c for c in store.list_claims() if c.run_id == run_id]
    finally:
        store.dispose()


def _job_status(cluster, run_id: str) -> dict:
    return cluster.stub.jobs[(NAMESPACE, cluster.job_name(run_id))]["status"]


@pytest.fixture(scope="module")
def cluster(postgres_server_url: str) -> Iterator[Deployment]:
    """One deployment (the example's code plus the env probe) for the tests that neither
    change its code nor need a model no run has evaluated yet: starting a code server is most
    of such a test's time. Objects a test changes are restored; each run is told apart by its
    run id."""
    with (
        fresh_database(postgres_server_url) as postgres_url,
        pytest.MonkeyPatch.context() as monkeypatch,
        deployment(postgres_url, monkeypatch, {"examples/sqlmesh_project/models/env_probe.py": ENV_PROBE}) as shared,
    ):
        yield shared


def test_a_sqlmesh_run_executes_the_commit_its_code_server_loaded(cluster):
    loaded = git(cluster.origin, "rev-parse", "HEAD")
    # pushed after the code server loaded, before the run is launched
    (cluster.origin / "examples/sqlmesh_project/models/pushed_later.sql").write_text(PUSHED_LATER)
    pushed = commit_all(cluster.origin, "a model the code server never loaded")

    run_id = cluster.submit("sqlmesh_example")
    finished = cluster.wait_for_run(run_id)
    log = cluster.pod_log(run_id)
    assert finished.status == dg.DagsterRunStatus.SUCCESS, cluster.explain(run_id)

    # the UI shows the revision that ran
    assert cluster.run_tags(run_id)[CODE_REVISION_TAG] == loaded != pushed
    job = _created_job(cluster, run_id)
    kubernetes_validate.validate(job, "1.37", strict=True)
    pod = job["spec"]["template"]["spec"]
    [git_sync] = pod["initContainers"]
    assert {"name": "GITSYNC_REF", "value": loaded} in git_sync["env"]
    container = pod["containers"][0]
    assert container["args"][:3] == ["dagster", "api", "execute_run"]
    # the code origin is the one the code server reported
    assert f"{layout.CODE_DIR}/definitions.py" in container["args"][3]
    code_volume = cluster.kubelet.volume_dir(NAMESPACE, cluster.job_name(run_id), "dagctl-code")
    assert (code_volume / layout.CODE_LINK).readlink() == Path(".worktrees") / loaded
    tables = cluster.tables("sqlmesh_example")
    assert SQLMESH_MODELS | {"env_probe"} <= set(tables), tables
    assert "pushed_later" not in tables
    assert all(tables[name] > 0 for name in SQLMESH_MODELS)
    # the worker ran as the image's user, as the pod's securityContext says
    assert f"run worker uid {layout.IMAGE_UID} gid {layout.IMAGE_GID}" in log
    wait_for(lambda: _job_status(cluster, run_id).get("succeeded") == 1, "the Job to report success", timeout=60)
    assert _claims_of(cluster, run_id) == []
    events = _events(cluster.instance, run_id)
    assert any("dagctl run summary" in e for e in events)

    # exactly the environment the spec resolves reached the process
    with cluster.warehouse().connect() as conn:
        env = dict(conn.exec_driver_sql("SELECT name, sha256 FROM sqlmesh_example.env_probe").fetchall())
    digest = lambda value: hashlib.sha256(value.encode()).hexdigest()  # noqa: E731
    assert env["SQLMESH_STATE_PASSWORD"] == digest(SECRET_VALUES["SQLMESH_STATE_PASSWORD"])
    assert env["SLACK_BOT_TOKEN"] == digest(SECRET_VALUES["SLACK_BOT_TOKEN"])
    assert env["MAX_CONCURRENT_MODELS"] == digest("3")
    assert "ONLY_IN_THE_TEST_PROCESS" not in env and "GITSYNC_PASSWORD" not in env

    # the secret scan covers manifests, the run, its event log, compute logs and the pod's log
    haystacks = [r.raw_body for r in cluster.stub.requests]
    haystacks += [dg.serialize_value(finished), repr(finished.run_config), *events, *cluster.compute_logs(), log]
    dumps = [text for text in haystacks if "run worker environment: " in text]
    assert dumps and all("SQLMESH_STATE_PASSWORD" in text for text in dumps)
    _assert_no_secret_values(haystacks)


def test_a_dbt_run_succeeds_with_the_code_servers_origin(cluster):
    run_id = cluster.submit("dbt_example")
    finished = cluster.wait_for_run(run_id)
    assert finished.status == dg.DagsterRunStatus.SUCCESS, cluster.explain(run_id)

    job = _created_job(cluster, run_id)
    pod = job["spec"]["template"]["spec"]
    # the code server loaded definitions.py from the checkout: dbt runs get it too
    assert [c["name"] for c in pod["initContainers"]] == ["git-sync"]
    assert f"{layout.CODE_DIR}/definitions.py" in pod["containers"][0]["args"][3]
    tables = cluster.tables("dbt_example")
    assert {"customers", "orders", "stg_orders", "daily_revenue"} <= set(tables), tables
    wait_for(lambda: _job_status(cluster, run_id).get("succeeded") == 1, "the Job to report success", timeout=60)
    assert _claims_of(cluster, run_id) == []
    haystacks = [r.raw_body for r in cluster.stub.requests]
    haystacks += [dg.serialize_value(finished), *_events(cluster.instance, run_id), *cluster.compute_logs()]
    _assert_no_secret_values([*haystacks, cluster.pod_log(run_id)])


def test_a_pod_that_cannot_start_fails_its_run_promptly_and_its_job_is_deleted(cluster):
    # the Secret exists, the key the project's state_db_password names does not
    with _secret_replaced(cluster, "sqlmesh-state-db", {"pasword": "typo"}):
        started = time.monotonic()
        run_id = cluster.submit("sqlmesh_example")
        finished = cluster.wait_for_run(run_id, timeout=120)
        elapsed = time.monotonic() - started

        assert finished.status == dg.DagsterRunStatus.FAILURE
        assert elapsed < 60 < cluster.instance.run_monitoring_start_timeout_seconds
        [failure] = [
            e.message
            for e in cluster.instance.all_logs(run_id)
            if e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_FAILURE"
        ]
        assert (
            f"CreateContainerConfigError: couldn't find key password in Secret {NAMESPACE}/sqlmesh-state-db" in failure
        )
        assert (NAMESPACE, cluster.job_name(run_id)) not in cluster.stub.jobs
        assert cluster.stub.pods_of_job(NAMESPACE, cluster.job_name(run_id)) == []
        _assert_no_secret_values([failure])


def test_a_git_sync_failure_puts_git_syncs_error_in_the_runs_failure(cluster):
    gone = "0" * 40  # a commit the repository does not have (e.g. force-pushed away)
    run_id = cluster.submit("sqlmesh_example", tags={CODE_REVISION_TAG: gone})
    finished = cluster.wait_for_run(run_id, timeout=120)

    assert finished.status == dg.DagsterRunStatus.FAILURE
    [failure] = [
        e.message
        for e in cluster.instance.all_logs(run_id)
        if e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_FAILURE"
    ]
    assert "init container 'git-sync' exited with code 1" in failure
    assert "error syncing repo: git fetch" in failure and gone in failure  # git-sync's own words
    assert (NAMESPACE, cluster.job_name(run_id)) not in cluster.stub.jobs
    _assert_no_secret_values([failure])


@pytest.fixture(scope="module")
def gated(postgres_server_url: str) -> Iterator[Deployment]:
    """A second deployment, for the runs that must fail or hold: the example's code plus a dbt
    model that fails when it runs and the gate model, one no run has evaluated yet (a FULL
    daily model is not due again the same day, so the shared ``cluster``, whose runs evaluate
    every model, cannot hold a run at it). ``<root>/gates`` is writable for the run workers."""
    extra = {GATE_MODEL_PATH: GATE, "examples/dbt_project/models/marts/broken.sql": BROKEN_DBT_MODEL}
    with (
        fresh_database(postgres_server_url) as postgres_url,
        pytest.MonkeyPatch.context() as monkeypatch,
        deployment(postgres_url, monkeypatch, extra) as shared,
    ):
        gates = shared.root / "gates"
        gates.mkdir(mode=0o777)
        gates.chmod(0o777)  # the run worker (the image's user) writes its marker here
        yield shared


def test_a_job_whose_run_fails_ends_failed(gated):
    cluster = gated
    run_id = cluster.submit("dbt_example")
    finished = cluster.wait_for_run(run_id)
    assert finished.status == dg.DagsterRunStatus.FAILURE, cluster.explain(run_id)
    wait_for(lambda: _job_status(cluster, run_id).get("failed") == 1, "the Job to report failure", timeout=60)
    assert not _job_status(cluster, run_id).get("succeeded")
    assert cluster.instance.run_launcher.check_run_worker_health(finished).status.value == "FAILED"


def run_at_the_gate(cluster: Deployment, gate: str) -> tuple[str, str, Path]:
    """Submit a ``sqlmesh_example`` run and wait until it is in the gate model, which holds until
    the file ``<root>/gates/<gate>`` exists (the run's pod gets its path from the ConfigMap).
    Returns the run id, its Kubernetes Job's name and the gate file."""
    gate_file = cluster.root / "gates" / gate
    _add_to_config_map(cluster, "warehouse", {"GATE_FILE": str(gate_file)})
    run_id = cluster.submit("sqlmesh_example")
    wait_for(
        Path(f"{gate_file}.waiting").exists,
        "the run to reach the gate model",
        timeout=240,
        every=0.2,
        explain=lambda: cluster.explain(run_id),
    )
    return run_id, cluster.job_name(run_id), gate_file


def test_a_killed_pod_fails_its_run_through_monitoring_and_a_terminated_run_stops_its_process(gated):
    """Two runs held in the gate model, one after the other, on one deployment:

    1. the node kills the first run's pod: one pass of run monitoring fails the run and
       releases its model claims in that pass;
    2. terminating the second run (it claims what the first held, so it reaches the gate the
       first never got through) deletes its Job and stops its process, and the run ends
       CANCELED;
    3. a third run then succeeds with every model, the gate's too, and leaves no claims.
    """
    cluster = gated
    victim, job_name, gate_file = run_at_the_gate(cluster, "killed.open")
    assert cluster.instance.get_run_by_id(victim).status == dg.DagsterRunStatus.STARTED
    assert _claims_of(cluster, victim) != []

    cluster.kubelet.kill(NAMESPACE, job_name, signal.SIGKILL)
    cluster.kubelet.wait(NAMESPACE, job_name, 60)
    assert cluster.stub.jobs[(NAMESPACE, job_name)]["status"]["failed"] == 1

    # one pass of the daemon's run monitoring over the run (Dagster's own code)
    [record] = cluster.instance.get_run_records(dg.RunsFilter(run_ids=[victim]))
    monitor_started_run(cluster.instance, None, record, logging.getLogger("run-monitoring"))
    assert cluster.instance.get_run_by_id(victim).status == dg.DagsterRunStatus.FAILURE
    events = _events(cluster.instance, victim)
    assert any("Run has not completed but K8s job has no active pods" in e for e in events)
    # released in that pass, not when another run next claims the models
    assert _claims_of(cluster, victim) == []
    assert any("model claim(s) of run" in e for e in events)

    # terminating a run deletes its Job and stops the process
    run_id, job_name, gate_file = run_at_the_gate(cluster, "terminated.open")
    [pid] = cluster.kubelet.pids(NAMESPACE, job_name)

    assert cluster.instance.run_launcher.terminate(run_id) is True

    assert (NAMESPACE, job_name) not in cluster.stub.jobs
    # The model in flight (Python) cannot be interrupted: let it end, so the process stops
    # on the SIGTERM from the pod's deletion rather than at the grace period's SIGKILL.
    gate_file.touch()
    cluster.kubelet.wait(NAMESPACE, job_name, 60)
    assert not process_alive(pid)
    finished = cluster.wait_for_run(run_id, timeout=120)
    assert finished.status == dg.DagsterRunStatus.CANCELED

    # the gate stays open (the ConfigMap still names the touched file): a later run succeeds
    later = cluster.submit("sqlmesh_example")
    finished = cluster.wait_for_run(later)
    assert finished.status == dg.DagsterRunStatus.SUCCESS, cluster.explain(later)
    tables = cluster.tables("sqlmesh_example")
    assert SQLMESH_MODELS | {"gate"} <= set(tables), tables
    assert _claims_of(cluster, later) == []


@contextmanager
def _secret_replaced(cluster: Deployment, name: str, data: dict[str, str]) -> Iterator[None]:
    """The Secret ``name`` holds ``data`` for the block, then what it held before."""
    before = cluster.stub.object_data("secrets", NAMESPACE, name)
    with cluster.stub.lock:
        del cluster.stub.objects[("secrets", NAMESPACE, name)]
    cluster.stub.create_secret(NAMESPACE, name, data)
    try:
        yield
    finally:
        with cluster.stub.lock:
            del cluster.stub.objects[("secrets", NAMESPACE, name)]
        cluster.stub.create_secret(NAMESPACE, name, before)


def _add_to_config_map(cluster, name: str, data: dict[str, str]) -> None:
    current = cluster.stub.object_data("configmaps", NAMESPACE, name) or {}
    with cluster.stub.lock:
        del cluster.stub.objects[("configmaps", NAMESPACE, name)]
    cluster.stub.create_config_map(NAMESPACE, name, {**current, **data})
