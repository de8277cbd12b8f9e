"""The local kubelet (``tests/kubelet.py``) itself, driven through the real `kubernetes` client.

Jobs are created with ``BatchV1Api`` against the API stub; the kubelet runs their pods here.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import kubernetes
import pytest
from dagster_k8s.client import DagsterKubernetesClient
from git_repo import git, init_repo
from k8s_stub import KubernetesApiStub
from kubelet import ImageStandIn, LocalKubelet, process_alive
from waiting import wait_for

pytestmark = pytest.mark.timeout(120)

NS = "data"
IMAGE = "registry.example.com/runner:1"
REPO_URL = "https://git.example.com/data/platform.git"
MOUNT = "/opt/dagster/projects"


@pytest.fixture
def origin_repo(tmp_path: Path) -> Path:
    """The test's own repository: `release` one commit behind `main`."""
    repo = init_repo(tmp_path / "origin")
    (repo / "code.txt").write_text("first\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "first")
    (repo / "code.txt").write_text("released\n")
    git(repo, "commit", "-q", "-am", "release")
    git(repo, "branch", "release")
    (repo / "code.txt").write_text("unreleased\n")
    git(repo, "commit", "-q", "-am", "later")
    return repo


@pytest.fixture
def cluster(
    tmp_path: Path, origin_repo: Path
) -> Iterator[tuple[KubernetesApiStub, LocalKubelet, kubernetes.client.ApiClient]]:
    image = ImageStandIn(
        bin_dir=Path(sys.executable).parent,
        workdir="/opt/app",
        paths={"/opt/app": tmp_path / "image-app"},
    )
    (tmp_path / "image-app").mkdir()
    with (
        KubernetesApiStub() as stub,
        LocalKubelet(stub, tmp_path / "node", {IMAGE: image}, {REPO_URL: origin_repo}) as kubelet,
    ):
        config = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(
            str(stub.write_kubeconfig(tmp_path / "kubeconfig")), client_configuration=config
        )
        with kubernetes.client.ApiClient(config) as api:
            yield stub, kubelet, api


def job(name: str, args: list[str], **pod_spec) -> dict:
    container = {"name": "main", "image": IMAGE, "args": args, **pod_spec.pop("container", {})}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container], **pod_spec}},
        },
    }


def python(code: str) -> list[str]:
    return ["python", "-c", code]


def job_status(api, name: str):
    return kubernetes.client.BatchV1Api(api).read_namespaced_job_status(name, NS).status


def pod_of(api, name: str):
    [pod] = kubernetes.client.CoreV1Api(api).list_namespaced_pod(NS, label_selector=f"job-name={name}").items
    return pod


def finished(api, name: str) -> bool:
    status = job_status(api, name)
    return bool(status.succeeded or status.failed)


PROBE = """
import json, os, pathlib, subprocess, sys
out = pathlib.Path(sys.argv[1])
link = pathlib.Path(sys.argv[2])
out.write_text(json.dumps({
    "env": dict(os.environ),
    "cwd": os.getcwd(),
    "code": (link / "code.txt").read_text(),
    "link_target": os.readlink(link),
    "commits": subprocess.run(["git", "-C", str(link), "rev-list", "--count", "HEAD"], capture_output=True, text=True).stdout.strip(),
    "head": subprocess.run(["git", "-C", str(link), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
}))
print("probe done")
"""


def test_git_sync_checkout_env_and_paths_are_what_the_spec_says(cluster, tmp_path, origin_repo, monkeypatch):
    stub, kubelet, api = cluster
    monkeypatch.setenv("ONLY_IN_THE_TEST_PROCESS", "must-not-reach-the-pod")
    stub.create_config_map(NS, "app-env", {"FROM_CONFIG_MAP": "cm", "OVERRIDDEN": "from-envfrom", "1BAD": "skipped"})
    stub.create_secret(NS, "app-secrets", {"API_TOKEN": "tok-123"})
    stub.create_secret(NS, "state-db", {"password": "pw-456"})
    stub.create_secret(NS, "git-credentials", {"GITSYNC_USERNAME": "bot", "GITSYNC_PASSWORD": "git-pw"})
    stub.create_config_map(NS, "settings", {"region": "eu"})
    result = tmp_path / "probe.json"
    mount = [{"name": "code", "mountPath": MOUNT}]
    spec = job(
        "probe",
        python(PROBE) + [str(result), f"{MOUNT}/repo"],
        container={
            "workingDir": f"{MOUNT}/repo",
            "volumeMounts": mount,
            "envFrom": [{"configMapRef": {"name": "app-env"}}, {"secretRef": {"name": "app-secrets"}}],
            "env": [
                {"name": "LITERAL", "value": "plain"},
                {"name": "OVERRIDDEN", "value": "from-env"},
                {"name": "EXPANDED", "value": "$(LITERAL)-$(FROM_CONFIG_MAP)-$$(LITERAL)"},
                {"name": "CODE_DIR", "value": f"{MOUNT}/repo"},
                {"name": "STATE_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "state-db", "key": "password"}}},
                {"name": "REGION", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "region"}}},
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            ],
        },
        volumes=[{"name": "code", "emptyDir": {}}],
        initContainers=[
            {
                "name": "git-sync",
                "image": "registry.k8s.io/git-sync/git-sync:v4.4.0",
                "env": [
                    {"name": "GITSYNC_REPO", "value": REPO_URL},
                    {"name": "GITSYNC_REF", "value": "release"},
                    {"name": "GITSYNC_ROOT", "value": MOUNT},
                    {"name": "GITSYNC_LINK", "value": "repo"},
                    {"name": "GITSYNC_DEPTH", "value": "1"},
                    {"name": "GITSYNC_ONE_TIME", "value": "true"},
                    {
                        "name": "GITSYNC_PASSWORD",
                        "valueFrom": {"secretKeyRef": {"name": "git-credentials", "key": "GITSYNC_PASSWORD"}},
                    },
                ],
                "volumeMounts": mount,
            }
        ],
    )
    kubernetes.client.BatchV1Api(api).create_namespaced_job(NS, spec)
    wait_for(lambda: finished(api, "probe"), "the probe Job", timeout=60)

    status = job_status(api, "probe")
    assert (status.succeeded, status.failed, status.active) == (1, None, None), kubelet.pod_log(NS, "probe")
    assert [c.type for c in status.conditions] == ["SuccessCriteriaMet", "Complete"]
    pod = pod_of(api, "probe")
    assert pod.status.phase == "Succeeded"
    assert [s.state.terminated.exit_code for s in pod.status.init_container_statuses] == [0]
    assert pod.status.container_statuses[0].state.terminated.reason == "Completed"

    probe = json.loads(result.read_text())
    code_volume = kubelet.volume_dir(NS, "probe", "code")
    release_sha = git(origin_repo, "rev-parse", "release")
    # git-sync v4's layout: <root>/<link> -> .worktrees/<sha>, at the ref, depth 1
    assert probe["link_target"] == f".worktrees/{release_sha}"
    assert (code_volume / ".worktrees" / release_sha / "code.txt").read_text() == "released\n"
    assert probe["code"] == "released\n" and probe["head"] == release_sha and probe["commits"] == "1"
    assert probe["cwd"] == f"{MOUNT}/.worktrees/{release_sha}"  # workingDir, the link resolved
    env = probe["env"]
    assert env.pop("PATH").startswith(f"{Path(sys.executable).parent}:")
    assert env.pop("HOME").startswith(str(tmp_path / "node"))
    assert env == {
        "LANG": "C.UTF-8",
        "HOSTNAME": pod.metadata.name,
        "FROM_CONFIG_MAP": "cm",
        "API_TOKEN": "tok-123",
        "LITERAL": "plain",
        "OVERRIDDEN": "from-env",
        "EXPANDED": "plain-cm-$(LITERAL)",
        "CODE_DIR": f"{MOUNT}/repo",
        "STATE_PASSWORD": "pw-456",
        "REGION": "eu",
        "POD_NAME": pod.metadata.name,
    }
    assert "probe done" in kubernetes.client.CoreV1Api(api).read_namespaced_pod_log(
        pod.metadata.name, NS, container="main"
    )


def test_command_exiting_1_fails_the_job_as_dagster_k8s_reads_it(cluster):
    stub, kubelet, api = cluster
    kubernetes.client.BatchV1Api(api).create_namespaced_job(
        NS, job("boom", python("print('going down'); raise SystemExit(1)"))
    )
    wait_for(lambda: finished(api, "boom"), "the failing Job", timeout=60)

    status = job_status(api, "boom")
    assert (status.failed, status.succeeded, status.active) == (1, None, None)
    assert status.conditions[-1].type == "Failed" and status.conditions[-1].reason == "BackoffLimitExceeded"
    terminated = pod_of(api, "boom").status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (1, "Error")
    client = DagsterKubernetesClient.production_client(
        batch_api_override=kubernetes.client.BatchV1Api(api), core_api_override=kubernetes.client.CoreV1Api(api)
    )
    assert client.get_job_status("boom", NS).failed == 1
    assert "going down" in kubelet.pod_log(NS, "boom")


def test_missing_secret_key_leaves_the_pod_in_create_container_config_error(cluster, tmp_path):
    stub, kubelet, api = cluster
    stub.create_secret(NS, "state-db", {"user": "x"})
    marker = tmp_path / "started"
    spec = job(
        "nokey",
        python(f"open({str(marker)!r}, 'w')"),
        container={"env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "state-db", "key": "password"}}}]},
    )
    kubernetes.client.BatchV1Api(api).create_namespaced_job(NS, spec)
    wait_for(lambda: pod_of(api, "nokey").status.container_statuses, "the container status", timeout=30)

    pod = pod_of(api, "nokey")
    waiting = pod.status.container_statuses[0].state.waiting
    assert pod.status.phase == "Pending"
    assert waiting.reason == "CreateContainerConfigError"
    assert waiting.message == f"couldn't find key password in Secret {NS}/state-db"
    assert job_status(api, "nokey").active == 1  # a real Job waits too; run monitoring's start timeout ends it
    assert not marker.exists()
    client = DagsterKubernetesClient.production_client(
        batch_api_override=kubernetes.client.BatchV1Api(api), core_api_override=kubernetes.client.CoreV1Api(api)
    )
    debug = client.get_pod_debug_info(pod.metadata.name, NS)
    assert "Waiting: CreateContainerConfigError: couldn't find key password" in debug
    assert "Error: couldn't find key password in Secret data/state-db" in debug  # the Warning event


SLEEPER = "import subprocess, time; subprocess.Popen(['sleep', '300']); print('up', flush=True); time.sleep(300)"


def test_deleting_the_job_with_its_pods_kills_the_process_group(cluster):
    stub, kubelet, api = cluster
    batch = kubernetes.client.BatchV1Api(api)
    batch.create_namespaced_job(NS, job("sleeper", python(SLEEPER)))
    wait_for(lambda: "up" in kubelet.pod_log(NS, "sleeper"), "the sleeper to start", timeout=30)
    [pid] = kubelet.pids(NS, "sleeper")
    group = subprocess.run(["pgrep", "-g", str(pid)], capture_output=True, text=True).stdout.split()
    assert len(group) == 2  # python and its child `sleep`

    # batch/v1's default propagation orphans the pod: the process keeps running
    batch.delete_namespaced_job("sleeper", NS)
    time.sleep(0.5)
    assert process_alive(pid)

    # dagster-k8s's delete_job also deletes the Job's pods: the whole group stops
    batch.create_namespaced_job(NS, job("sleeper2", python(SLEEPER)))
    wait_for(lambda: "up" in kubelet.pod_log(NS, "sleeper2"), "the second sleeper to start", timeout=30)
    [pid2] = kubelet.pids(NS, "sleeper2")
    group2 = [int(p) for p in subprocess.run(["pgrep", "-g", str(pid2)], capture_output=True, text=True).stdout.split()]
    client = DagsterKubernetesClient.production_client(
        batch_api_override=batch, core_api_override=kubernetes.client.CoreV1Api(api)
    )
    assert client.delete_job("sleeper2", NS) is True
    wait_for(
        lambda: not any(process_alive(p) for p in group2), "the second sleeper's process group to stop", timeout=30
    )
    assert ("data", "sleeper2") not in stub.jobs

    kubelet.kill(NS, "sleeper", signal.SIGKILL)
    wait_for(lambda: not process_alive(pid), "the orphaned sleeper to be killed", timeout=30)


def test_killed_container_fails_the_pod_and_the_job(cluster):
    stub, kubelet, api = cluster
    kubernetes.client.BatchV1Api(api).create_namespaced_job(NS, job("victim", python(SLEEPER)))
    wait_for(lambda: "up" in kubelet.pod_log(NS, "victim"), "the victim to start", timeout=30)
    assert job_status(api, "victim").active == 1
    assert pod_of(api, "victim").status.phase == "Running"

    kubelet.kill(NS, "victim", signal.SIGKILL)
    wait_for(lambda: finished(api, "victim"), "the killed Job to fail", timeout=30)
    assert job_status(api, "victim").failed == 1
    terminated = pod_of(api, "victim").status.container_statuses[0].state.terminated
    assert terminated.exit_code == 128 + signal.SIGKILL


def test_unmapped_repository_fails_the_init_container(cluster):
    stub, kubelet, api = cluster
    spec = job(
        "norepo",
        python("print('never')"),
        volumes=[{"name": "code", "emptyDir": {}}],
        initContainers=[
            {
                "name": "git-sync",
                "image": "registry.k8s.io/git-sync/git-sync:v4.4.0",
                "args": ["--repo=https://git.example.com/other.git", f"--root={MOUNT}", "--one-time"],
                "volumeMounts": [{"name": "code", "mountPath": MOUNT}],
            }
        ],
    )
    kubernetes.client.BatchV1Api(api).create_namespaced_job(NS, spec)
    wait_for(lambda: finished(api, "norepo"), "the Job to fail", timeout=30)
    pod = pod_of(api, "norepo")
    assert pod.status.phase == "Failed"
    assert pod.status.init_container_statuses[0].state.terminated.exit_code == 1
    assert "never" not in kubelet.pod_log(NS, "norepo")
    assert "not mapped" in kubelet.pod_log(NS, "norepo")


IDENTITY_PROBE = """
import json, os, pathlib
def attempt(path):
    try:
        pathlib.Path(path).write_text("x")
        return "written"
    except OSError as exc:
        return exc.strerror
print(json.dumps({
    "uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups()),
    "image_path": attempt("/opt/app/written-by-the-pod"),
    "scratch": attempt("/opt/scratch/written-by-the-pod"),
}), flush=True)
"""


def test_the_process_runs_as_the_pods_user_with_a_read_only_image(tmp_path):
    """runAsUser/runAsGroup/fsGroup become the process's ids; readOnlyRootFilesystem makes
    the image's paths read-only (even where its permissions would allow writing)."""
    app = tmp_path / "image-app"
    app.mkdir()
    app.chmod(0o777)
    image = ImageStandIn(
        bin_dir=Path(sys.executable).parent,
        workdir="/opt/app",
        paths={"/opt/app": app},
        host_paths=(Path(sys.base_prefix),),
    )
    spec = job(
        "asuser",
        python(IDENTITY_PROBE),
        securityContext={"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1001, "fsGroup": 2000},
        volumes=[{"name": "scratch", "emptyDir": {}}],
        container={
            "securityContext": {"readOnlyRootFilesystem": True},
            "volumeMounts": [{"name": "scratch", "mountPath": "/opt/scratch"}],
        },
    )
    with KubernetesApiStub() as stub, LocalKubelet(stub, tmp_path / "node", {IMAGE: image}) as kubelet:
        stub.create_pod(NS, {"metadata": {"name": "asuser"}, "spec": spec["spec"]["template"]["spec"]})
        kubelet.wait(NS, "asuser", 60)
        log = kubelet.pod_log(NS, "asuser")
        seen = json.loads(log.strip().splitlines()[-1])
        assert stub.pods[(NS, "asuser")]["status"]["phase"] == "Succeeded", log

    assert (seen["uid"], seen["gid"], seen["groups"]) == (1000, 1001, [2000])
    assert seen["image_path"] == "Read-only file system"
    assert seen["scratch"] == "written"
    assert not (app / "written-by-the-pod").exists()


def test_run_as_non_root_without_a_user_is_a_create_container_config_error(cluster):
    stub, kubelet, api = cluster
    kubernetes.client.BatchV1Api(api).create_namespaced_job(
        NS, job("rootish", python("print('ran')"), securityContext={"runAsNonRoot": True})
    )
    wait_for(lambda: pod_of(api, "rootish").status.container_statuses, "the container status", timeout=30)
    waiting = pod_of(api, "rootish").status.container_statuses[0].state.waiting
    assert (waiting.reason, waiting.message) == (
        "CreateContainerConfigError",
        "container has runAsNonRoot and image will run as root",
    )


def test_a_volume_hides_what_the_image_has_below_its_mount_path(tmp_path):
    """The git-sync emptyDir at /opt/dagster/projects hides the image's copy of the code there."""
    app = tmp_path / "image-app"
    (app / "code").mkdir(parents=True)
    (app / "code" / "baked.txt").write_text("from the image")
    image = ImageStandIn(bin_dir=Path(sys.executable).parent, workdir="/", paths={"/opt/app/code": app / "code"})
    spec = {
        "restartPolicy": "Never",
        "volumes": [{"name": "checkout", "emptyDir": {}}],
        "containers": [
            {
                "name": "main",
                "image": IMAGE,
                "args": python("import os; print(sorted(os.listdir('/opt/app')))"),
                "volumeMounts": [{"name": "checkout", "mountPath": "/opt/app"}],
            }
        ],
    }
    with KubernetesApiStub() as stub, LocalKubelet(stub, tmp_path / "node", {IMAGE: image}) as kubelet:
        stub.create_pod(NS, {"metadata": {"name": "hidden"}, "spec": spec})
        kubelet.wait(NS, "hidden", 60)
        assert kubelet.pod_log(NS, "hidden").strip() == "[]"
