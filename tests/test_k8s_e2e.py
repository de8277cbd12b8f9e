"""End to end on the stub cluster: a run submitted to a PostgreSQL-backed instance is launched by
DagctlK8sRunLauncher, its Job's pod runs on the local kubelet (``tests/kubelet.py``) as
``dagster api execute_run`` from the git-sync checkout (SQLMesh) or the image (dbt), and the
run ends in Dagster with the models in the warehouse. Deployment: ``tests/k8s_cluster.py``.
"""

from __future__ import annotations

import hashlib
import logging
import signal
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import kubernetes_validate
import pytest
from dagster._daemon.monitoring.run_monitoring import monitor_started_run
from k8s_cluster import CHECKOUT, NAMESPACE, deployment, git
from k8s_stub import SECRET_VALUES
from kubelet import process_alive
from waiting import wait_for

from dagctl_dagster.execution.claims import ClaimStore

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
    digests = [hashlib.sha256(os.environ[name].encode()).hexdigest() for name in names]
    return pd.DataFrame({"name": names, "sha256": digests})
"""

# Waits until the file GATE_FILE names exists: a model that is mid-run for as long as a test needs.
GATE = """\
import os
import time

import pandas as pd
from sqlmesh import model


@model("sqlmesh_example.gate", kind="FULL", columns={"opened": "int"})
def execute(context, start, end, execution_time, **kwargs):
    marker = os.environ["GATE_FILE"]
    open(marker + ".waiting", "w").close()
    while not os.path.exists(marker):
        time.sleep(0.1)
    return pd.DataFrame({"opened": [1]})
"""


def _events(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    return [dg.serialize_value(entry) for entry in instance.all_logs(run_id)]


def _tables(path: Path, schema: str) -> dict[str, int]:
    with duckdb.connect(str(path), read_only=True) as conn:
        names = [
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = ?", [schema]
            ).fetchall()
        ]
        return {name: conn.execute(f'SELECT count(*) FROM "{schema}"."{name}"').fetchone()[0] for name in names}


def _assert_no_secret_values(haystacks: list[str]) -> None:
    for name, value in SECRET_VALUES.items():
        leaks = [text[:120] for text in haystacks if value in text]
        assert leaks == [], f"{name}'s value found in {leaks}"


def test_sqlmesh_run_executes_from_the_git_sync_checkout(tmp_path, postgres_url, monkeypatch):
    probe = {"examples/sqlmesh_project/models/env_probe.py": ENV_PROBE}
    with deployment(tmp_path, postgres_url, monkeypatch, probe) as cluster:
        run = cluster.submit("sqlmesh_example")
        job_name = f"dagster-run-{run.run_id}"
        finished = cluster.wait_for_run(run.run_id)
        log = cluster.pod_log(run.run_id)
        assert finished.status == dg.DagsterRunStatus.SUCCESS, cluster.explain(run.run_id)

        [created] = cluster.stub.requests_for("POST", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs")
        kubernetes_validate.validate(created.body, "1.37", strict=True)
        # the pod ran the launcher's `dagster api execute_run` from the git-sync checkout
        container = created.body["spec"]["template"]["spec"]["containers"][0]
        assert container["args"][:3] == ["dagster", "api", "execute_run"]
        assert f"{CHECKOUT}/definitions.py" in container["args"][3]
        code_volume = cluster.kubelet.volume_dir(NAMESPACE, job_name, "dagctl-code")
        head = git(cluster.origin, "rev-parse", "HEAD")
        assert (code_volume / "repo").readlink() == Path(".worktrees") / head
        # The run is finished once its worker wrote RUN_SUCCESS; the Job reports success when
        # the worker process has exited, a moment later.
        wait_for(
            lambda: cluster.stub.jobs[(NAMESPACE, job_name)]["status"].get("succeeded") == 1,
            "the Job to report success",
            timeout=60,
        )
        assert cluster.instance.run_launcher.check_run_worker_health(finished).status.value == "SUCCESS"

        tables = _tables(cluster.warehouse_dir / "sqlmesh_warehouse.duckdb", "sqlmesh_example")
        assert SQLMESH_MODELS | {"env_probe"} <= set(tables), tables
        assert all(tables[name] > 0 for name in SQLMESH_MODELS)
        store = ClaimStore.from_environment(instance=cluster.instance)
        assert store.list_claims() == []
        store.dispose()
        events = _events(cluster.instance, run.run_id)
        assert any("dagctl run summary" in e for e in events)

        # exactly the environment the spec resolves reached the process
        with duckdb.connect(str(cluster.warehouse_dir / "sqlmesh_warehouse.duckdb"), read_only=True) as conn:
            env = dict(conn.execute("SELECT name, sha256 FROM sqlmesh_example.env_probe").fetchall())
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


def test_dbt_run_executes_from_the_image(tmp_path, postgres_url, monkeypatch):
    with deployment(tmp_path, postgres_url, monkeypatch) as cluster:
        run = cluster.submit("dbt_example")
        finished = cluster.wait_for_run(run.run_id)
        log = cluster.pod_log(run.run_id)
        assert finished.status == dg.DagsterRunStatus.SUCCESS, cluster.explain(run.run_id)

        [created] = cluster.stub.requests_for("POST", f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs")
        pod = created.body["spec"]["template"]["spec"]
        assert "initContainers" not in pod and pod["containers"][0]["image"] == "registry.example.com/dbt-example:1.0"
        tables = _tables(cluster.warehouse_dir / "dbt.duckdb", "main")
        assert {"customers", "orders", "stg_orders", "daily_revenue"} <= set(tables), tables
        store = ClaimStore.from_environment(instance=cluster.instance)
        assert store.list_claims() == []
        store.dispose()
        haystacks = [r.raw_body for r in cluster.stub.requests]
        haystacks += [
            dg.serialize_value(finished),
            *_events(cluster.instance, run.run_id),
            *cluster.compute_logs(),
            log,
        ]
        _assert_no_secret_values(haystacks)


@contextmanager
def run_at_the_gate(tmp_path: Path, postgres_url: str, monkeypatch):
    """A ``sqlmesh_example`` run waiting in a model that holds until the gate file exists.

    Yields the cluster, the run, its Kubernetes Job's name and the gate file.
    """
    gate_file = tmp_path / "gate.open"
    with deployment(
        tmp_path / "d", postgres_url, monkeypatch, {"examples/sqlmesh_project/models/gate.py": GATE}
    ) as cluster:
        _add_to_config_map(cluster, "sqlmesh-env", {"GATE_FILE": str(gate_file)})
        monkeypatch.setenv("GATE_FILE", str(gate_file))
        run = cluster.submit("sqlmesh_example")
        wait_for(Path(f"{gate_file}.waiting").exists, "the run to reach the gate model", timeout=240, every=0.2)
        yield cluster, run, f"dagster-run-{run.run_id}", gate_file


def test_killed_pod_fails_the_run_through_monitoring_and_a_later_run_finishes(tmp_path, postgres_url, monkeypatch):
    with run_at_the_gate(tmp_path, postgres_url, monkeypatch) as (cluster, victim, job_name, gate_file):
        assert cluster.instance.get_run_by_id(victim.run_id).status == dg.DagsterRunStatus.STARTED
        store = ClaimStore.from_environment(instance=cluster.instance, lease_seconds=60)
        assert any(c.run_id == victim.run_id for c in store.list_claims())

        cluster.kubelet.kill(NAMESPACE, job_name, signal.SIGKILL)
        cluster.kubelet.wait(NAMESPACE, job_name, 60)
        assert cluster.stub.jobs[(NAMESPACE, job_name)]["status"]["failed"] == 1

        # one pass of the daemon's run monitoring over the run (Dagster's own code)
        [record] = cluster.instance.get_run_records(dg.RunsFilter(run_ids=[victim.run_id]))
        monitor_started_run(cluster.instance, None, record, logging.getLogger("run-monitoring"))
        dead = cluster.instance.get_run_by_id(victim.run_id)
        assert dead.status == dg.DagsterRunStatus.FAILURE
        failure = [
            e
            for e in _events(cluster.instance, victim.run_id)
            if "Run has not completed but K8s job has no active pods" in e
        ]
        assert failure

        gate_file.touch()
        later = cluster.submit("sqlmesh_example")
        finished = cluster.wait_for_run(later.run_id)
        assert finished.status == dg.DagsterRunStatus.SUCCESS, cluster.pod_log(later.run_id)[-6000:]
        tables = _tables(cluster.warehouse_dir / "sqlmesh_warehouse.duckdb", "sqlmesh_example")
        assert SQLMESH_MODELS | {"gate"} <= set(tables), tables
        assert store.list_claims() == []
        store.dispose()


def test_terminating_a_run_deletes_its_job_and_stops_the_process(tmp_path, postgres_url, monkeypatch):
    with run_at_the_gate(tmp_path, postgres_url, monkeypatch) as (cluster, run, job_name, _):
        [pid] = cluster.kubelet.pids(NAMESPACE, job_name)

        assert cluster.instance.run_launcher.terminate(run.run_id) is True

        assert (NAMESPACE, job_name) not in cluster.stub.jobs
        cluster.kubelet.wait(NAMESPACE, job_name, 60)  # SIGTERM from the pod's deletion
        assert not process_alive(pid)
        finished = cluster.wait_for_run(run.run_id, timeout=120)
        assert finished.status == dg.DagsterRunStatus.CANCELED


def _add_to_config_map(cluster, name: str, data: dict[str, str]) -> None:
    current = cluster.stub.object_data("configmaps", NAMESPACE, name) or {}
    with cluster.stub.lock:
        del cluster.stub.objects[("configmaps", NAMESPACE, name)]
    cluster.stub.create_config_map(NAMESPACE, name, {**current, **data})
