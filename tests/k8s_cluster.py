"""A Dagster deployment on the stub cluster, for the end-to-end tests in ``test_k8s_e2e.py``.

What it stands for, piece by piece:

- **the platform repository**: a git repository the test creates (``origin``) holding the
  example deployment (``definitions.py``, ``.dagctl/config.yaml`` with ``k8s:`` blocks,
  ``examples/``), committed on ``main``; git-sync's repository URL maps to it.
- **the image**: this test environment's ``.venv`` (``dagster``, ``dagctl-dagster``, SQLMesh,
  dbt). Its filesystem: ``/opt/dagster/app`` (WORKDIR; for the dbt project, a copy of the
  repository, as an image with the dbt project baked in has it) and DAGSTER_HOME.
- **Dagster's instance**: dagster-postgres storage on the test's PostgreSQL, password by
  ``{env: DAGSTER_PG_PASSWORD}`` as the Helm chart writes it, run monitoring as in
  ``helm-values/dagster-values.yaml``, and ``DagctlK8sRunLauncher`` configured as the values
  configure it (``load_incluster_config: false`` and a kubeconfig for the stub instead).
- **the code server**: the test loads ``load_definitions`` from the repository's working tree
  and gives runs the code origin a code server at ``/opt/dagster/projects/repo`` (git-sync's
  checkout in the Helm values) would report.
- **Secrets and ConfigMaps** the config names, created in the stub with the values of
  ``k8s_stub.SECRET_VALUES``; the warehouse paths (outside every mount, as a network volume
  would be) come from ConfigMaps.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
import yaml
from conftest import REPO_ROOT, copy_repository
from dagster._core.definitions.reconstruct import ReconstructableRepository
from k8s_stub import SECRET_VALUES, KubernetesApiStub, write_config
from kubelet import ImageStandIn, LocalKubelet
from waiting import wait_for

from dagctl_dagster import load_definitions

NAMESPACE = "data"
REPO_URL = "https://git.example.com/data/platform.git"
CODE_IMAGE = "registry.example.com/dagctl-dagster:0.1.0"
DBT_IMAGE = "registry.example.com/dbt-example:1.0"
CHECKOUT = "/opt/dagster/projects/repo"  # git_sync mount_path / link defaults, as the code server loads
IMAGE_APP = "/opt/dagster/app"
DAGSTER_HOME_IN_IMAGE = "/opt/dagster/dagster_home"

CONFIG = """\
version: 1
projects:
  - name: sqlmesh_example
    framework: sqlmesh
    path: examples/sqlmesh_project
    gateway: local
    k8s:
      namespace: data
      git_sync:
        repository: https://git.example.com/data/platform.git
        ref: main
        credentials_secret: git-credentials
      env_config_maps: [sqlmesh-env]
      env_secrets: [slack-bot]
      state_db_password: {secret: sqlmesh-state-db, key: password}
      max_concurrent_models: 3
  - name: dbt_example
    framework: dbt
    path: examples/dbt_project
    target: dev
    k8s:
      namespace: data
      image: registry.example.com/dbt-example:1.0
      env_config_maps: [dbt-env]
      env_secrets: [slack-bot]
"""


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True).stdout.strip()


def create_origin(path: Path, extra_files: dict[str, str] | None = None) -> Path:
    """The platform repository: the example deployment with this module's config, on `main`."""
    copy_repository(path)
    write_config(path, CONFIG)
    for name, text in (extra_files or {}).items():
        (path / name).write_text(text)
    (path / ".gitignore").write_text(".cache/\n*.duckdb\ntarget/\nlogs/\n")
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "ci@example.com")
    git(path, "config", "user.name", "ci")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "platform")
    return path


def postgres_db_config(url: str) -> dict:
    """dagster-postgres `postgres_db` settings for ``url`` with the password by env reference."""
    parsed = sa.engine.make_url(url)
    params = {key: value for key, value in parsed.query.items()}
    return {
        "username": parsed.username,
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "hostname": parsed.host or "",
        "db_name": parsed.database,
        "port": parsed.port or 5432,
        **({"params": params} if params else {}),
    }


@dataclass
class Deployment:
    root: Path
    origin: Path
    stub: KubernetesApiStub
    kubelet: LocalKubelet
    instance: dg.DagsterInstance
    warehouse_dir: Path

    def submit(self, project: str) -> dg.DagsterRun:
        """Create and launch a run of ``<project>_run`` the way the daemon would dequeue it."""
        defs = load_definitions(self.origin / ".dagctl" / "config.yaml")
        job = defs.resolve_job_def(f"{project}_run")
        code_dir = CHECKOUT if project == "sqlmesh_example" else IMAGE_APP
        repository = ReconstructableRepository.for_file(
            f"{code_dir}/definitions.py", "defs", working_directory=code_dir
        )
        run = self.instance.create_run_for_job(
            job_def=job,
            tags=dict(job.tags),
            job_code_origin=repository.get_reconstructable_job(job.name).get_python_origin(),
        )
        self.instance.launch_run(run.run_id, workspace=None)
        return run

    def wait_for_run(self, run_id: str, timeout: float = 300) -> dg.DagsterRun:

        def finished() -> dg.DagsterRun | None:
            run = self.instance.get_run_by_id(run_id)
            return run if run is not None and run.is_finished else None

        return wait_for(
            finished,
            f"run {run_id} to finish",
            timeout=timeout,
            every=0.5,
            explain=lambda: f"pod log tail:\n{self.pod_log(run_id)[-4000:]}",
        )

    def pod_log(self, run_id: str) -> str:
        return self.kubelet.pod_log(NAMESPACE, f"dagster-run-{run_id}")

    def explain(self, run_id: str) -> str:
        """The pod's log and the run's error events, for an assertion message."""
        errors = [
            f"{entry.dagster_event.event_type_value}: {entry.message} {entry.dagster_event.event_specific_data}"
            for entry in self.instance.all_logs(run_id)
            if entry.dagster_event
        ]
        pods = [pod.get("status") for (ns, _), pod in self.stub.pods.items() if run_id in pod["metadata"]["name"]]
        return f"{pods}\n" + self.pod_log(run_id)[-4000:] + "\n".join(errors)[-6000:]

    def compute_logs(self) -> list[str]:
        storage = Path(self.instance.root_directory) / "storage"
        return [
            p.read_text(errors="replace")
            for p in storage.rglob("*")
            if p.is_file() and p.suffix in (".out", ".err", ".complete", ".log", "")
        ]


@contextmanager
def deployment(
    root: Path, postgres_url: str, monkeypatch, extra_files: dict[str, str] | None = None
) -> Iterator[Deployment]:
    root.mkdir(parents=True, exist_ok=True)
    origin = create_origin(root / "origin", extra_files)
    warehouse_dir = root / "warehouse"
    warehouse_dir.mkdir()
    image_app = root / "image-app"
    shutil.copytree(origin, image_app, ignore=shutil.ignore_patterns(".git"))  # the dbt image's baked-in repo
    image_home = root / "image-home"
    image_home.mkdir()
    sqlmesh_db = str(warehouse_dir / "sqlmesh_warehouse.duckdb")
    pg_password = sa.engine.make_url(postgres_url).password or SECRET_VALUES["DAGSTER_PG_PASSWORD"]
    for name, value in {**SECRET_VALUES, "DAGSTER_PG_PASSWORD": pg_password}.items():
        monkeypatch.setenv(name, value)  # the daemon's own environment holds the secrets
    monkeypatch.setenv("SQLMESH_EXAMPLE_DB", sqlmesh_db)  # the code server loads with the same config
    monkeypatch.setenv("ONLY_IN_THE_TEST_PROCESS", "must-not-reach-the-pod")

    venv_bin = Path(sys.executable).parent
    image = ImageStandIn(
        bin_dir=venv_bin,
        workdir=IMAGE_APP,
        paths={IMAGE_APP: image_app, DAGSTER_HOME_IN_IMAGE: image_home},
    )
    with (
        KubernetesApiStub() as stub,
        LocalKubelet(stub, root / "node", {CODE_IMAGE: image, DBT_IMAGE: image}, {REPO_URL: origin}) as kubelet,
    ):
        stub.create_secret(NAMESPACE, "dagster-postgresql-secret", {"postgresql-password": pg_password})
        stub.create_secret(NAMESPACE, "sqlmesh-state-db", {"password": SECRET_VALUES["SQLMESH_STATE_PASSWORD"]})
        stub.create_secret(
            NAMESPACE,
            "git-credentials",
            {"GITSYNC_USERNAME": "deploy-bot", "GITSYNC_PASSWORD": SECRET_VALUES["GITSYNC_PASSWORD"]},
        )
        stub.create_secret(NAMESPACE, "slack-bot", {"SLACK_BOT_TOKEN": SECRET_VALUES["SLACK_BOT_TOKEN"]})
        stub.create_config_map(NAMESPACE, "sqlmesh-env", {"SQLMESH_EXAMPLE_DB": sqlmesh_db})
        stub.create_config_map(NAMESPACE, "dbt-env", {"DBT_EXAMPLE_DB": str(warehouse_dir / "dbt.duckdb")})
        (root / "home").mkdir()
        with dg.instance_for_test(
            overrides=instance_overrides(root, stub, origin, postgres_url), temp_dir=str(root / "home")
        ) as instance:
            yield Deployment(root, origin, stub, kubelet, instance, warehouse_dir)


def instance_overrides(root: Path, stub: KubernetesApiStub, origin: Path, postgres_url: str) -> dict:
    values = yaml.safe_load((REPO_ROOT / "helm-values" / "dagster-values.yaml").read_text())
    launcher = values["runLauncher"]["config"]["customRunLauncher"]
    monitoring = values["dagsterDaemon"]["runMonitoring"]
    config = {
        **launcher["config"],
        "dagctl_config_path": str(origin / ".dagctl" / "config.yaml"),
        "load_incluster_config": False,
        "kubeconfig_file": str(stub.write_kubeconfig(root / "kubeconfig")),
        "job_image": CODE_IMAGE,
    }
    return {
        "storage": {"postgres": {"postgres_db": postgres_db_config(postgres_url)}},
        "run_launcher": {"module": launcher["module"], "class": launcher["class"], "config": config},
        "run_monitoring": {
            "enabled": True,
            "start_timeout_seconds": monitoring["startTimeoutSeconds"],
            "cancel_timeout_seconds": monitoring["cancelTimeoutSeconds"],
            "max_resume_run_attempts": monitoring["maxResumeRunAttempts"],
            "poll_interval_seconds": monitoring["pollIntervalSeconds"],
        },
    }
