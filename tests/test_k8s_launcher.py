"""DagctlK8sRunLauncher through a real DagsterInstance and the real `kubernetes` client over HTTP.

The Kubernetes API is the stub in ``k8s_stub.py``; everything else is real: the instance
(SQLite storage in a temp dir) builds the launcher from ``run_launcher`` config as a
Helm-deployed ``dagster.yaml`` would, runs are created from real jobs with code origins,
and the launcher talks to the stub through dagster-k8s's API client.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import kubernetes_validate
import pytest
import yaml
from k8s_stub import FULL_CONFIG, SECRET_VALUES, KubernetesApiStub, write_config

from dagctl_dagster.k8s.launcher import DagctlK8sRunLauncher

pytestmark = pytest.mark.timeout(120)

DBT_LOCATION_CONFIG = """\
version: 1
projects:
  - name: dbt_example
    framework: dbt
    path: examples/dbt_project
    target: dev
    k8s:
      namespace: marts
      image: registry.example.com/marts:2.0
      env_secrets: [slack-bot]
      resources:
        limits: {memory: 1Gi}
"""

RUN_CONFIG = {"ops": {"evaluate": {"config": {"state_password": {"env": "SQLMESH_STATE_PASSWORD"}}}}}


@dg.op(config_schema={"state_password": dg.StringSource})
def evaluate(context) -> None:
    context.log.info("evaluated")


@dg.job(tags={"dagctl/project": "analytics"})
def analytics_models() -> None:
    """Tagged: the launcher finds the project from `dagctl/project`."""
    evaluate()


@dg.job
def marts_run() -> None:
    """Untagged: the launcher finds the project from the `marts_` prefix."""
    evaluate()


@dg.job
def housekeeping() -> None:
    """No project at all: launched exactly as dagster-k8s does."""
    evaluate()


@dg.job(tags={"dagctl/project": "finance"})
def finance_run() -> None:
    evaluate()


REVISION = "0123456789abcdef0123456789abcdef01234567"


@dg.job(tags={"dagctl/project": "analytics", "dagctl/code_revision": REVISION})
def analytics_loaded_from_a_checkout() -> None:
    """As load_definitions tags jobs loaded from a git-sync checkout."""
    evaluate()


@dg.job(tags={"dagctl/project": "analytics", "dagctl/code_revision": "main"})
def analytics_with_a_branch_as_revision() -> None:
    evaluate()


@pytest.fixture
def stub() -> Iterator[KubernetesApiStub]:
    with KubernetesApiStub() as server:
        yield server


def _one_event_log(home: Path) -> dict:
    """Storage overrides: the event log of every run in one SQLite file, not one file per run
    (each made with its own tables and migration stamp as the run starts)."""
    return {
        "event_log_storage": {
            "module": "dagster._core.storage.event_log",
            "class": "ConsolidatedSqliteEventLogStorage",
            "config": {"base_dir": str(home / "history")},
        }
    }


@pytest.fixture(scope="module")
def empty_storage(tmp_path_factory) -> Path:
    """A DAGSTER_HOME whose SQLite storage Dagster has created, with no runs in it. Each test's
    instance starts from a copy: creating the storage (tables, indexes, migrations stamped)
    takes a second or two, copying its files milliseconds."""
    home = tmp_path_factory.mktemp("empty_storage")
    with dg.instance_for_test(overrides=_one_event_log(home), temp_dir=str(home)) as created:
        assert created.get_runs() == []
    return home


@pytest.fixture
def instance(tmp_path: Path, stub: KubernetesApiStub, empty_storage: Path, monkeypatch) -> Iterator[dg.DagsterInstance]:
    for name, value in SECRET_VALUES.items():
        monkeypatch.setenv(name, value)  # the daemon's own environment holds the secrets
    config_path = write_config(tmp_path / "repo", FULL_CONFIG)
    kubeconfig = stub.write_kubeconfig(tmp_path / "kubeconfig")
    launcher_config = {
        "dagctl_config_path": str(config_path),
        "load_incluster_config": False,
        "kubeconfig_file": str(kubeconfig),
        "job_namespace": "dagster",
        "service_account_name": "dagster",
        "instance_config_map": "dagster-instance",
        "postgres_password_secret": "dagster-postgresql-secret",
        "dagster_home": "/opt/dagster/dagster_home",
        "job_image": "registry.example.com/code:7",
        "env_secrets": ["dagster-shared-env"],
    }
    home = tmp_path / "dagster_home"
    shutil.copytree(empty_storage, home)  # its dagster.yaml is rewritten with the overrides below
    with dg.instance_for_test(
        overrides={
            **_one_event_log(home),
            "run_launcher": {
                "module": "dagctl_dagster.k8s.launcher",
                "class": "DagctlK8sRunLauncher",
                "config": launcher_config,
            },
        },
        temp_dir=str(home),
    ) as test_instance:
        yield test_instance


def _launch(instance: dg.DagsterInstance, job: dg.JobDefinition) -> dg.DagsterRun:
    run = instance.create_run_for_job(
        job_def=job,
        run_config=RUN_CONFIG,
        tags=dict(job.tags),
        job_code_origin=dg.reconstructable(job).get_python_origin(),
    )
    instance.launch_run(run.run_id, workspace=None)
    return instance.get_run_by_id(run.run_id)


def _created_jobs(stub: KubernetesApiStub):
    return stub.requests_for("POST", "/apis/batch/v1/")


def test_instance_builds_the_dagctl_launcher_from_config(instance):
    launcher = instance.run_launcher
    assert isinstance(launcher, DagctlK8sRunLauncher)
    assert launcher.dagctl_config_path.name == "config.yaml"
    assert launcher.job_namespace == "dagster"


def test_launch_run_creates_one_job_with_the_projects_injections(instance, stub):
    run = _launch(instance, analytics_models)

    [request] = _created_jobs(stub)
    assert request.path == "/apis/batch/v1/namespaces/data/jobs"
    job = request.body
    kubernetes_validate.validate(job, "1.37", strict=True)
    assert job["metadata"]["name"] == f"dagster-run-{run.run_id}"
    assert job["metadata"]["labels"]["dagctl.io/project"] == "analytics"
    assert job["metadata"]["labels"]["dagctl.io/run-id"] == run.run_id
    assert job["metadata"]["annotations"]["dagctl.io/framework"] == "sqlmesh"
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["ttlSecondsAfterFinished"] == 600
    pod = job["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["git-sync"]
    assert pod["serviceAccountName"] == "analytics-runner"
    [container] = pod["containers"]
    assert container["image"] == "registry.example.com/code:7"
    assert container["args"][:3] == ["dagster", "api", "execute_run"]
    # the launcher's own envFrom and the project's, both kept
    assert container["envFrom"] == [
        {"secretRef": {"name": "dagster-shared-env"}},
        {"configMapRef": {"name": "analytics-env"}},
        {"secretRef": {"name": "analytics-secrets"}},
        {"secretRef": {"name": "slack-bot"}},
    ]
    env = {e["name"]: e for e in container["env"]}
    assert env["SQLMESH_STATE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "sqlmesh-state-db", "key": "password"}
    assert env["MAX_CONCURRENT_MODELS"]["value"] == "8"
    assert container["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False

    assert run.status == dg.DagsterRunStatus.STARTING
    assert run.tags["dagster/image"] == "registry.example.com/code:7"
    messages = [e.message for e in instance.all_logs(run.run_id)]
    assert "[DagctlK8sRunLauncher] Creating Kubernetes run worker job" in messages
    assert "[DagctlK8sRunLauncher] Kubernetes run worker job created" in messages


def test_project_found_from_the_job_name_prefix(instance, stub):
    _launch(instance, marts_run)
    [request] = _created_jobs(stub)
    # marts sets no namespace: the launcher's job_namespace
    assert request.path == "/apis/batch/v1/namespaces/dagster/jobs"
    pod = request.body["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    assert pod["containers"][0]["image"] == "registry.example.com/marts:1.0"
    assert request.body["metadata"]["labels"]["dagctl.io/framework"] == "dbt"
    kubernetes_validate.validate(request.body, "1.37", strict=True)


def test_run_of_no_project_is_launched_as_dagster_k8s_does(instance, stub):
    _launch(instance, housekeeping)
    [request] = _created_jobs(stub)
    assert request.path == "/apis/batch/v1/namespaces/dagster/jobs"
    labels = request.body["metadata"]["labels"]
    assert "dagctl.io/project" not in labels
    assert request.body["spec"]["backoffLimit"] == 0  # dagster-k8s's own default
    kubernetes_validate.validate(request.body, "1.37", strict=True)


def test_unknown_project_tag_fails_the_launch_naming_config_and_tag(instance, stub):
    with pytest.raises(Exception, match=r"dagctl/project=finance.*config\.yaml: no project named 'finance'"):
        _launch(instance, finance_run)
    assert _created_jobs(stub) == []


def test_check_run_worker_health_maps_job_status(instance, stub):
    run = _launch(instance, analytics_models)
    launcher = instance.run_launcher
    job_name = f"dagster-run-{run.run_id}"

    stub.set_job_status("data", job_name, active=1)
    assert launcher.check_run_worker_health(run).status.value == "RUNNING"

    stub.set_job_status("data", job_name, succeeded=1)
    assert launcher.check_run_worker_health(run).status.value == "SUCCESS"

    stub.set_job_status("data", job_name, failed=1)
    health = launcher.check_run_worker_health(run)
    assert (health.status.value, health.msg) == ("FAILED", "K8s job failed")

    # a run that its worker marked STARTED whose pod died (OOM, eviction): monitoring fails it
    started = run.with_status(dg.DagsterRunStatus.STARTED)
    health = launcher.check_run_worker_health(started)
    assert (health.status.value, health.msg) == ("FAILED", "Run has not completed but K8s job has no active pods")

    status_reads = stub.requests_for("GET", f"/apis/batch/v1/namespaces/data/jobs/{job_name}/status")
    assert len(status_reads) == 4


def test_check_run_worker_health_is_unknown_when_the_job_is_gone(instance, stub):
    run = _launch(instance, analytics_models)
    del stub.jobs[("data", f"dagster-run-{run.run_id}")]
    health = instance.run_launcher.check_run_worker_health(run)
    assert health.status.value == "UNKNOWN"
    assert "could not be found" in health.msg


def test_terminate_deletes_the_job_and_its_pod_in_the_project_namespace(instance, stub):
    run = _launch(instance, analytics_models)
    job_name = f"dagster-run-{run.run_id}"

    assert instance.run_launcher.terminate(run.run_id) is True

    assert ("data", job_name) not in stub.jobs
    deleted = [r.path for r in stub.requests_for("DELETE")]
    assert deleted[0] == f"/apis/batch/v1/namespaces/data/jobs/{job_name}"
    assert len(deleted) == 2 and deleted[1].startswith(f"/api/v1/namespaces/data/pods/{job_name}-")
    assert not [key for key in stub.pods if key[0] == "data"]
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.CANCELING
    assert "[DagctlK8sRunLauncher] Run was terminated successfully." in [
        e.message for e in instance.all_logs(run.run_id)
    ]


def test_no_secret_value_in_manifests_run_config_or_event_log(instance, stub):
    runs = [_launch(instance, job) for job in (analytics_models, marts_run, housekeeping)]
    for run in runs:
        instance.run_launcher.terminate(run.run_id)

    haystacks = [request.raw_body for request in stub.requests]
    for run in runs:
        stored = instance.get_run_by_id(run.run_id)
        haystacks.append(dg.serialize_value(stored))
        haystacks.append(repr(stored.run_config))
        haystacks.extend(dg.serialize_value(entry) for entry in instance.all_logs(run.run_id))

    assert len(_created_jobs(stub)) == 3
    for value in SECRET_VALUES.values():
        leaks = [text[:80] for text in haystacks if value in text]
        assert leaks == [], f"secret value found in {leaks}"
    # the references are there instead
    assert any("sqlmesh-state-db" in text for text in haystacks)
    assert runs[0].run_config == RUN_CONFIG


@pytest.mark.timeout(300)
def test_dagster_cli_launches_a_load_definitions_job_through_the_launcher(
    example_repo, tmp_path, stub, empty_storage, monkeypatch
):
    """End to end: `dagster job launch` of a load_definitions job, the instance's launcher, the stub.

    The code location serves the bundled dbt example (image-based, with a `k8s:` block).
    """
    import os
    import subprocess

    import yaml
    from conftest import venv_command

    write_config(example_repo, DBT_LOCATION_CONFIG)
    home = tmp_path / "cli_home"
    shutil.copytree(empty_storage, home)  # an instance whose storage exists, as a deployed one's does
    launcher_config = {
        "dagctl_config_path": str(example_repo / ".dagctl" / "config.yaml"),
        "load_incluster_config": False,
        "kubeconfig_file": str(stub.write_kubeconfig(tmp_path / "kubeconfig")),
        "job_namespace": "dagster",
        "service_account_name": "dagster",
        "instance_config_map": "dagster-instance",
        "postgres_password_secret": "dagster-postgresql-secret",
        "dagster_home": "/opt/dagster/dagster_home",
        "job_image": "registry.example.com/dagctl-dagster:0.1.0",
    }
    (home / "dagster.yaml").write_text(
        yaml.safe_dump(
            {
                "telemetry": {"enabled": False},
                "run_launcher": {
                    "module": "dagctl_dagster.k8s.launcher",
                    "class": "DagctlK8sRunLauncher",
                    "config": launcher_config,
                },
            }
        )
    )
    env = {**os.environ, **SECRET_VALUES, "DAGSTER_HOME": str(home)}
    result = subprocess.run(
        [venv_command("dagster"), "job", "launch", "-w", "workspace.yaml", "-j", "dbt_example_run"],
        cwd=example_repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]

    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with dg.DagsterInstance.get() as instance:
        # the CLI submits to the QueuedRunCoordinator (as in the Helm deployment); dequeue it
        # the way the daemon's run queue does
        [queued] = instance.get_runs()
        assert queued.status == dg.DagsterRunStatus.QUEUED
        assert _created_jobs(stub) == []
        instance.launch_run(queued.run_id, workspace=None)

    [request] = _created_jobs(stub)
    assert request.path == "/apis/batch/v1/namespaces/marts/jobs"
    job = request.body
    kubernetes_validate.validate(job, "1.37", strict=True)
    labels = job["metadata"]["labels"]
    assert (labels["dagctl.io/project"], labels["dagctl.io/framework"]) == ("dbt_example", "dbt")
    assert labels["dagster/code-location"] == "dagctl"
    pod = job["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    [container] = pod["containers"]
    assert container["image"] == "registry.example.com/marts:2.0"
    assert container["envFrom"] == [{"secretRef": {"name": "slack-bot"}}]
    assert container["resources"] == {
        "limits": {"cpu": "1", "memory": "1Gi"},
        "requests": {"cpu": "250m", "memory": "512Mi"},
    }
    assert {"name": "MAX_CONCURRENT_MODELS", "value": "5"} in container["env"]
    assert container["securityContext"]["runAsNonRoot"] is True

    with dg.DagsterInstance.get() as instance:
        [run] = instance.get_runs()
        assert run.job_name == "dbt_example_run"
        assert run.tags["dagctl/project"] == "dbt_example"
        assert labels["dagctl.io/run-id"] == run.run_id
        stub.set_job_status("marts", f"dagster-run-{run.run_id}", active=1)
        assert instance.run_launcher.check_run_worker_health(run).status.value == "RUNNING"
        logged = [dg.serialize_value(entry) for entry in instance.all_logs(run.run_id)]
        haystacks = [request.raw_body, dg.serialize_value(run), *logged]
    for value in SECRET_VALUES.values():
        assert not [text for text in haystacks if value in text]


def test_a_run_clones_the_commit_its_code_server_loaded_and_fails_its_pod_when_it_fails(instance, stub):
    _launch(instance, analytics_loaded_from_a_checkout)
    [request] = _created_jobs(stub)
    pod = request.body["spec"]["template"]["spec"]
    [init] = pod["initContainers"]
    assert {"name": "GITSYNC_REF", "value": REVISION} in init["env"]  # not the config's ref v1.2.3
    # fail_pod_on_run_failure defaults to true: the worker exits 1 when its run fails
    assert '"set_exit_code_on_failure": true' in pod["containers"][0]["args"][3]


def test_a_revision_tag_that_is_not_a_commit_is_refused(instance, stub):
    with pytest.raises(Exception, match=r"dagctl/code_revision='main', which is not a full git commit id"):
        _launch(instance, analytics_with_a_branch_as_revision)
    assert _created_jobs(stub) == []


RBAC_PATH = Path(__file__).resolve().parent.parent / "helm-values" / "rbac-runs-namespace.yaml"
_VERBS = {"POST": "create", "DELETE": "delete", "PUT": "update", "PATCH": "patch"}


def _rbac_request(method: str, path: str) -> tuple[str, str, str, str]:
    """(namespace, API group, resource[/subresource], verb) of a request, as RBAC sees it."""
    parts = path.strip("/").split("/")
    group = "" if parts[0] == "api" else parts[1]
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    namespace, resource, name, sub = rest[1], rest[2], rest[3] if len(rest) > 3 else None, rest[4:]
    verb = _VERBS.get(method) or ("get" if name else "list")
    return namespace, group, "/".join([resource, *sub]), verb


def test_the_runs_namespace_rbac_allows_every_call_the_launcher_makes(instance, stub):
    documents = [d for d in yaml.safe_load_all(RBAC_PATH.read_text()) if d]
    for document in documents:
        kubernetes_validate.validate(document, "1.37", strict=True)
    [account] = [d for d in documents if d["kind"] == "ServiceAccount"]
    [role] = [d for d in documents if d["kind"] == "Role"]
    [binding] = [d for d in documents if d["kind"] == "RoleBinding"]
    namespace = role["metadata"]["namespace"]
    assert account["metadata"] == {"name": "dagster", "namespace": namespace}  # the launcher's service_account_name
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "dagster", "namespace": "dagster"}]

    # launch (with the pod watch), health check, termination: in the project's namespace `data`
    run = _launch(instance, analytics_models)
    launcher = instance.run_launcher
    launcher.start_watcher().poll_once()
    launcher.check_run_worker_health(instance.get_run_by_id(run.run_id))
    launcher.get_run_worker_debug_info(instance.get_run_by_id(run.run_id))
    launcher.terminate(run.run_id)

    calls = {_rbac_request(r.method, r.path) for r in stub.requests if "/namespaces/" in r.path}
    assert {verb for _, _, _, verb in calls} >= {"create", "get", "list", "delete"}
    for call_namespace, group, resource, verb in calls:
        assert call_namespace == namespace
        assert any(
            group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]
            for rule in role["rules"]
        ), (group, resource, verb)
