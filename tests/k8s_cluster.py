"""A Dagster deployment on the stub cluster, as helm-values/ and docs/kubernetes.md set it up.

What it stands for, piece by piece:

- **the platform repository**: a git repository the test creates (``origin``) holding the
  example deployment (``definitions.py``, ``.dagctl/config.yaml`` with this module's
  :data:`CONFIG`, ``examples/``), committed on ``main``; git-sync's repository URL maps to it.
- **the image** (``Dockerfile``): this test environment's ``.venv`` at the image's paths
  (:func:`code_image_stand_in`, from ``dagctl_dagster/k8s/layout.py``): the code copied to
  ``CODE_DIR`` and an empty ``DAGSTER_HOME``, both owned by the image's uid, which every
  container runs as (the kubelet switches to the pod's ``runAsUser``).
- **PostgreSQL**: Dagster's storage, the claim store, the SQLMesh state and both warehouses
  live in the test's database, reached by every pod at a TCP address (the database's
  Service; a proxy when the test server listens on a Unix socket only).
- **the code server**: the ``dagctl`` user deployment of ``helm-values/dagster-values.yaml``
  rendered as the chart's ``deployment-user.yaml`` renders it (:func:`code_server_pod`), run
  by the kubelet: git-sync clones ``main`` into its emptyDir, then ``dagster code-server
  start`` loads ``/opt/dagster/projects/repo/definitions.py``. Runs are launched through
  that server, as the UI launches them (GraphQL ``launchRun`` on a workspace whose location
  is the server), so each run's code origin is the one the server reports.
- **the daemon**: this test process. Its instance has ``DagctlK8sRunLauncher`` configured
  as the values configure it (``load_incluster_config: false`` and a kubeconfig for the stub
  instead) and run monitoring as the values set it; the default run coordinator launches
  at once (in the chart, the daemon's QueuedRunCoordinator launches the same run).
- **Secrets and ConfigMaps** the config and the values name, created in the stub with the
  values of ``k8s_stub.SECRET_VALUES``.
"""

from __future__ import annotations

import glob
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa
import yaml
from conftest import REPO_ROOT, copy_repository, free_port
from dagster_graphql.test.utils import (
    define_out_of_process_context,
    define_out_of_process_workspace,
    execute_dagster_graphql,
)
from k8s_stub import SECRET_VALUES, KubernetesApiStub, write_config
from kubelet import ImageStandIn, LocalKubelet
from tcp_proxy import TcpProxy
from waiting import wait_for

from dagctl_dagster.k8s import layout

NAMESPACE = "data"
RELEASE_NAMESPACE = "dagster"
LOCATION = "dagctl"
REPO_URL = "https://git.example.com/data/platform.git"
VALUES = yaml.safe_load((REPO_ROOT / "helm-values" / "dagster-values.yaml").read_text())
CODE_IMAGE = "registry.example.com/dagctl-dagster:0.1.0"

# The Kubernetes example of docs/kubernetes.md, step 3.
CONFIG = """\
version: 1
k8s_defaults:
  git_sync:
    repository: https://git.example.com/data/platform.git
    ref: main
    credentials_secret: git-credentials
projects:
  - name: sqlmesh_example
    framework: sqlmesh
    path: examples/sqlmesh_project
    gateway: postgres
    k8s:
      namespace: data
      env_config_maps: [warehouse]
      env_secrets: [slack-bot, sqlmesh-warehouse]
      state_db_password: {secret: sqlmesh-state-db, key: password}
      max_concurrent_models: 3
  - name: dbt_example
    framework: dbt
    path: examples/dbt_project
    target: prod
    overlap: forbid
    k8s:
      namespace: data
      env_config_maps: [warehouse]
      env_secrets: [slack-bot, dbt-warehouse]
"""

LAUNCH_RUN = """
mutation($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message stack }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""

RUN_TAGS = """
query($runId: ID!) {
  runOrError(runId: $runId) { ... on Run { status tags { key value } } }
}
"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True).stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


def create_origin(path: Path, extra_files: dict[str, str] | None = None) -> Path:
    """The platform repository: the example deployment with :data:`CONFIG`, on `main`."""
    copy_repository(path)
    write_config(path, CONFIG)
    for name, text in (extra_files or {}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    (path / ".gitignore").write_text(".cache/\n*.duckdb\ntarget/\nlogs/\n")
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "ci@example.com")
    git(path, "config", "user.name", "ci")
    commit_all(path, "platform")
    return path


def code_image_stand_in(code: Path, dagster_home: Path) -> ImageStandIn:
    """The Dockerfile's image on this machine: the test's venv, the code at ``CODE_DIR`` and
    ``DAGSTER_HOME``, owned by the image's user (``COPY --chown``, ``chown`` in the Dockerfile)."""
    for directory in (code, dagster_home):
        directory.mkdir(parents=True, exist_ok=True)
        _chown_tree(directory, layout.IMAGE_UID, layout.IMAGE_GID)
    return ImageStandIn(
        bin_dir=Path(sys.executable).parent,
        workdir=layout.CODE_DIR,
        paths={layout.CODE_DIR: code, layout.DAGSTER_HOME: dagster_home},
        env={"LANG": "C.UTF-8", "DAGSTER_HOME": layout.DAGSTER_HOME, "PYTHONUNBUFFERED": "1"},
        uid=layout.IMAGE_UID,
        gid=layout.IMAGE_GID,
        home=f"/home/{layout.IMAGE_USER}",
        host_paths=(Path(sys.base_prefix),),
    )


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    for path in [root, *root.rglob("*")]:
        shutil.chown(path, uid, gid) if not path.is_symlink() else None


def code_server_pod(deployment: dict[str, Any], port: int) -> dict[str, Any]:
    """The pod of a user deployment of the values, as the chart's ``deployment-user.yaml``
    renders it (``dagster code-server start`` with ``codeServerArgs``, ``DAGSTER_CURRENT_IMAGE``,
    env, envConfigMaps/envSecrets, volumes, init containers, security contexts). The git-sync
    sidecar is left out: the test moves the checkout itself where it needs to."""
    image = f"{deployment['image']['repository']}:{deployment['image']['tag']}"
    env = [
        {"name": "DAGSTER_CURRENT_IMAGE", "value": image},
        {
            "name": "DAGSTER_PG_PASSWORD",
            "valueFrom": {
                "secretKeyRef": {"name": VALUES["global"]["postgresqlSecretName"], "key": "postgresql-password"}
            },
        },
        *deployment.get("env", []),
    ]
    container = {
        "name": "dagster",
        "image": image,
        "args": ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", str(port), *deployment["codeServerArgs"]],
        "env": env,
        "envFrom": [
            *({"configMapRef": ref} for ref in deployment.get("envConfigMaps", [])),
            *({"secretRef": ref} for ref in deployment.get("envSecrets", [])),
        ],
        "volumeMounts": deployment.get("volumeMounts", []),
        "securityContext": deployment.get("securityContext", {}),
    }
    return {
        "metadata": {"name": f"dagster-{deployment['name']}", "labels": {"deployment": deployment["name"]}},
        "spec": {
            "securityContext": deployment.get("podSecurityContext", {}),
            "initContainers": deployment.get("initContainers", []),
            "containers": [container],
            "volumes": deployment.get("volumes", []),
        },
    }


@contextmanager
def world_readable_directory() -> Iterator[Path]:
    """A directory the pods' non-root user can reach (pytest's basetemp is private to root)."""
    root = Path(tempfile.mkdtemp(prefix="dagctl-k8s-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def database_service(postgres_url: str) -> Iterator[sa.URL]:
    """The test database at a TCP address any pod can use (its Service in the cluster)."""
    url = sa.engine.make_url(postgres_url)
    socket_dir = url.query.get("host")
    if url.host or not socket_dir:
        yield url
        return
    [socket_path] = [p for p in glob.glob(f"{socket_dir}/.s.PGSQL.*") if not p.endswith(".lock")]
    with TcpProxy(socket_path) as proxy:
        yield url.set(host="127.0.0.1", port=proxy.port, query={})


def postgres_db_config(url: sa.URL) -> dict:
    """dagster-postgres `postgres_db` settings for ``url`` with the password by env reference."""
    return {
        "username": url.username,
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": url.host,
        "db_name": url.database,
        "port": url.port or 5432,
    }


@dataclass
class Deployment:
    root: Path
    origin: Path
    stub: KubernetesApiStub
    kubelet: LocalKubelet
    instance: dg.DagsterInstance
    database: sa.URL
    workspace_file: Path
    code_server: str  # its pod's name
    # The UI's workspace once the code server has loaded: one for the deployment, as the
    # webserver keeps one, so the location's snapshot is fetched once, not at every request.
    workspace: Any = None

    # -- the UI ----------------------------------------------------------------------------

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        """Dagster's GraphQL API (the webserver's schema) over this deployment's workspace: a
        request context of :attr:`workspace`, as the webserver makes one per request (before
        the code server has loaded, a workspace of the request's own)."""
        if self.workspace is None:
            with define_out_of_process_context(str(self.workspace_file), None, self.instance) as context:
                result = execute_dagster_graphql(context, query, variables)
        else:
            result = execute_dagster_graphql(self.workspace.create_request_context(), query, variables)
        assert not result.errors, result.errors
        return result.data

    def submit(self, project: str, tags: dict[str, str] | None = None) -> str:
        """Launch ``<project>_run`` through the code server, as the UI's Launch button does."""
        params = {
            "selector": {
                "repositoryLocationName": LOCATION,
                "repositoryName": "__repository__",
                "jobName": f"{project}_run",
            },
            "runConfigData": {},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]},
        }
        launched = self.graphql(LAUNCH_RUN, {"executionParams": params})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        return launched["run"]["runId"]

    def run_tags(self, run_id: str) -> dict[str, str]:
        run = self.graphql(RUN_TAGS, {"runId": run_id})["runOrError"]
        return {tag["key"]: tag["value"] for tag in run["tags"]}

    # -- waiting and explaining ------------------------------------------------------------

    def wait_for_run(self, run_id: str, timeout: float = 300) -> dg.DagsterRun:
        def finished() -> dg.DagsterRun | None:
            run = self.instance.get_run_by_id(run_id)
            return run if run is not None and run.is_finished else None

        return wait_for(
            finished, f"run {run_id} to finish", timeout=timeout, every=0.5, explain=lambda: self.explain(run_id)
        )

    def job_name(self, run_id: str) -> str:
        return f"dagster-run-{run_id}"

    def pod_log(self, run_id: str) -> str:
        return self.kubelet.pod_log(NAMESPACE, self.job_name(run_id))

    def explain(self, run_id: str) -> str:
        """The pod's status and log, the run's events and the code server's log tail."""
        events = [
            f"{e.dagster_event.event_type_value}: {e.message}"
            for e in self.instance.all_logs(run_id)
            if e.dagster_event
        ]
        pods = [pod.get("status") for (_, name), pod in self.stub.pods.items() if run_id in name]
        server = self.kubelet.pod_log(RELEASE_NAMESPACE, self.code_server)[-3000:]
        return f"{pods}\n{self.pod_log(run_id)[-4000:]}\n" + "\n".join(events)[-6000:] + f"\ncode server:\n{server}"

    def compute_logs(self) -> list[str]:
        storage = Path(self.instance.root_directory) / "storage"
        return [p.read_text(errors="replace") for p in storage.rglob("*") if p.is_file()]

    def warehouse(self) -> sa.Engine:
        return sa.create_engine(self.database.set(password=self.database.password or ""))

    def tables(self, schema: str) -> dict[str, int]:
        engine = self.warehouse()
        try:
            with engine.connect() as conn:
                names = conn.execute(
                    sa.text(
                        "SELECT table_name FROM information_schema.tables WHERE table_schema = :s "
                        "UNION SELECT table_name FROM information_schema.views WHERE table_schema = :s"
                    ),
                    {"s": schema},
                ).scalars()
                return {n: conn.execute(sa.text(f'SELECT count(*) FROM "{schema}"."{n}"')).scalar_one() for n in names}
        finally:
            engine.dispose()


@contextmanager
def deployment(postgres_url: str, monkeypatch, extra_files: dict[str, str] | None = None) -> Iterator[Deployment]:
    with ExitStack() as stack:
        root = stack.enter_context(world_readable_directory())
        database = stack.enter_context(database_service(postgres_url))
        origin = create_origin(root / "origin", extra_files)
        image = code_image_stand_in(root / "image" / "code", root / "image" / "dagster_home")
        shutil.copytree(origin, image.paths[layout.CODE_DIR], dirs_exist_ok=True, ignore=shutil.ignore_patterns(".git"))
        _chown_tree(image.paths[layout.CODE_DIR], layout.IMAGE_UID, layout.IMAGE_GID)
        password = database.password or SECRET_VALUES["DAGSTER_PG_PASSWORD"]
        for name, value in {**SECRET_VALUES, "DAGSTER_PG_PASSWORD": password}.items():
            monkeypatch.setenv(name, value)  # the daemon's own environment holds the secrets
        monkeypatch.setenv("ONLY_IN_THE_TEST_PROCESS", "must-not-reach-the-pod")

        stub = stack.enter_context(KubernetesApiStub())
        kubelet = stack.enter_context(LocalKubelet(stub, root / "node", {CODE_IMAGE: image}, {REPO_URL: origin}))
        for namespace in (NAMESPACE, RELEASE_NAMESPACE):
            create_objects(stub, namespace, database, password)
        home = root / "dagster_home"
        home.mkdir()
        (home / "storage").mkdir(mode=0o777)
        (home / "storage").chmod(0o777)  # run workers write compute logs here, as the image's user
        instance = stack.enter_context(
            dg.instance_for_test(overrides=instance_overrides(root, stub, origin, database), temp_dir=str(home))
        )
        port = free_port()
        code_server = stub.create_pod(RELEASE_NAMESPACE, code_server_pod(_user_deployment(), port))
        stack.callback(stub.delete_pod, RELEASE_NAMESPACE, code_server, 5)
        workspace_file = root / "workspace.yaml"
        workspace_file.write_text(
            yaml.safe_dump(
                {"load_from": [{"grpc_server": {"host": "127.0.0.1", "port": port, "location_name": LOCATION}}]}
            )
        )
        cluster = Deployment(root, origin, stub, kubelet, instance, database, workspace_file, code_server)
        wait_for_code_server(cluster)
        cluster.workspace = stack.enter_context(define_out_of_process_workspace(str(workspace_file), None, instance))
        yield cluster


def create_objects(stub: KubernetesApiStub, namespace: str, database: sa.URL, password: str) -> None:
    """docs/kubernetes.md, step 2: the Secrets and ConfigMaps, here with the test's values."""
    stub.create_secret(namespace, "dagster-postgresql-secret", {"postgresql-password": password})
    stub.create_secret(namespace, "sqlmesh-state-db", {"password": SECRET_VALUES["SQLMESH_STATE_PASSWORD"]})
    stub.create_secret(namespace, "sqlmesh-warehouse", {"SQLMESH_WAREHOUSE_PASSWORD": password})
    stub.create_secret(namespace, "dbt-warehouse", {"DBT_WAREHOUSE_PASSWORD": password})
    stub.create_secret(
        namespace,
        "git-credentials",
        {"GITSYNC_USERNAME": "deploy-bot", "GITSYNC_PASSWORD": SECRET_VALUES["GITSYNC_PASSWORD"]},
    )
    stub.create_secret(namespace, "slack-bot", {"SLACK_BOT_TOKEN": SECRET_VALUES["SLACK_BOT_TOKEN"]})
    stub.create_config_map(
        namespace,
        "warehouse",
        {
            "PGHOST": database.host,
            "PGPORT": str(database.port),
            "PGUSER": database.username,
            "PGDATABASE": database.database,
        },
    )


def _user_deployment() -> dict[str, Any]:
    [deployment] = VALUES["dagster-user-deployments"]["deployments"]
    return deployment


def wait_for_code_server(cluster: Deployment) -> None:
    def loaded() -> bool:
        try:
            data = cluster.graphql(
                "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
                "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
            )
        except Exception:
            return False
        [entry] = data["workspaceOrError"]["locationEntries"]
        error = entry["locationOrLoadError"]
        if error is not None and error["__typename"] == "PythonError":
            # still starting; any other load error is the test's answer
            assert "DagsterUserCodeUnreachableError" in error["message"], error["message"]
            return False
        return error is not None and error["__typename"] == "RepositoryLocation"

    def alive() -> str | None:
        status = cluster.stub.pods.get((RELEASE_NAMESPACE, cluster.code_server), {}).get("status", {})
        return f"the code server pod ended ({status})" if status.get("phase") in ("Succeeded", "Failed") else None

    wait_for(
        loaded,
        "the code server to load the code location",
        timeout=240,
        every=1.0,
        alive=alive,
        explain=lambda: cluster.kubelet.pod_log(RELEASE_NAMESPACE, cluster.code_server)[-4000:],
    )


def instance_overrides(root: Path, stub: KubernetesApiStub, origin: Path, database: sa.URL) -> dict:
    launcher = VALUES["runLauncher"]["config"]["customRunLauncher"]
    monitoring = VALUES["dagsterDaemon"]["runMonitoring"]
    config = {
        **launcher["config"],
        "dagctl_config_path": str(origin / ".dagctl" / "config.yaml"),
        "load_incluster_config": False,
        "kubeconfig_file": str(stub.write_kubeconfig(root / "kubeconfig")),
    }
    return {
        "storage": {"postgres": {"postgres_db": postgres_db_config(database)}},
        "run_launcher": {"module": launcher["module"], "class": launcher["class"], "config": config},
        # the values' QueuedRunCoordinator is the daemon's; here the launch happens at submission
        "run_coordinator": {"module": "dagster._core.run_coordinator", "class": "DefaultRunCoordinator"},
        "run_monitoring": {
            "enabled": True,
            "start_timeout_seconds": monitoring["startTimeoutSeconds"],
            "cancel_timeout_seconds": monitoring["cancelTimeoutSeconds"],
            "max_resume_run_attempts": monitoring["maxResumeRunAttempts"],
            "poll_interval_seconds": monitoring["pollIntervalSeconds"],
        },
    }
