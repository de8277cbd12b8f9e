"""The image the Dockerfile builds, checked without building it (CI has no Docker daemon).

``dagctl_dagster/k8s/layout.py`` is the one list of the image's paths and user. This module
reads the ``Dockerfile`` and ``helm-values/dagster-values.yaml`` and fails when either
disagrees with it; the test cluster (``tests/k8s_cluster.py``) builds its image stand-in
from the same module, so the end-to-end tests run the code where the image puts it, as
the image's uid.
"""

from __future__ import annotations

import importlib.metadata
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from k8s_cluster import code_image_stand_in

from dagctl_dagster.config import GitSyncConfig, K8sConfig
from dagctl_dagster.k8s import layout
from dagctl_dagster.k8s.manifest import LauncherSettings

REPO_ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(60)


@dataclass
class Stage:
    """One build stage: its instructions as (keyword, arguments) in order."""

    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str:
        return self.all(keyword)[-1]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for args in self.all("ENV"):
            for pair in shlex.split(args):
                name, _, value = pair.partition("=")
                values[name] = value
        return values


def dockerfile_stages(text: str) -> list[Stage]:
    """The Dockerfile's stages; continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            logical.append(pending.strip())
            pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            stages.append(Stage(args.split(" AS ")[-1].strip() if " AS " in args else str(len(stages))))
        elif stages:
            stages[-1].instructions.append((keyword.upper(), args.strip()))
    return stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return dockerfile_stages((REPO_ROOT / "Dockerfile").read_text())


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load((REPO_ROOT / "helm-values" / "dagster-values.yaml").read_text())


def test_the_image_is_built_in_stages_from_the_lock(stages):
    build, runtime = stages[0], stages[-1]
    assert len(stages) >= 2 and runtime.name == "runtime"
    syncs = [args for args in build.all("RUN") if args.startswith("uv sync")]
    assert syncs and all("--frozen" in s and "--compile-bytecode" in s and "--no-dev" in s for s in syncs)
    assert build.env()["UV_PROJECT_ENVIRONMENT"] == layout.VENV_DIR
    # the runtime stage gets the environment and the code, not the build tools
    assert f"--from={build.name} {layout.VENV_DIR} {layout.VENV_DIR}" in runtime.all("COPY")
    assert not any("uv " in args for args in runtime.all("RUN"))


def test_the_image_runs_as_its_non_root_user_with_the_code_at_one_path(stages):
    runtime = stages[-1]
    assert runtime.last("USER") == f"{layout.IMAGE_UID}:{layout.IMAGE_GID}"
    assert layout.IMAGE_UID != 0
    assert runtime.last("WORKDIR") == layout.CODE_DIR
    [create_user] = [args for args in runtime.all("RUN") if "useradd" in args]
    assert f"--uid {layout.IMAGE_UID}" in create_user and f"--gid {layout.IMAGE_GID}" in create_user
    assert f"chown {layout.IMAGE_UID}:{layout.IMAGE_GID} {layout.DAGSTER_HOME}" in create_user
    # the code belongs to the image's user: dbt and SQLMesh write their target/ and cache beside it
    code_copy = (
        f"--from={stages[0].name} --chown={layout.IMAGE_UID}:{layout.IMAGE_GID} {layout.CODE_DIR} {layout.CODE_DIR}"
    )
    assert code_copy in runtime.all("COPY")
    assert stages[0].last("WORKDIR") == layout.CODE_DIR
    env = runtime.env()
    assert env["PATH"].split(":")[0] == f"{layout.VENV_DIR}/bin"
    assert env["DAGSTER_HOME"] == layout.DAGSTER_HOME


def test_the_build_context_leaves_out_local_state():
    ignored = (REPO_ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", ".dagster_home", "**/*.duckdb", "**/target"):
        assert entry in ignored, entry


def test_helm_values_and_launcher_defaults_use_the_image_layout(values):
    launcher = values["runLauncher"]["config"]["customRunLauncher"]["config"]
    assert launcher["dagster_home"] == layout.DAGSTER_HOME == LauncherSettings().dagster_home
    assert launcher["dagctl_config_path"] == layout.DAGCTL_CONFIG_PATH
    assert launcher["fail_pod_on_run_failure"] is True
    for component in ("dagsterDaemon", "dagsterWebserver"):
        [mount] = values[component]["volumeMounts"]
        assert mount["mountPath"] == layout.DAGCTL_CONFIG_DIR
    [deployment] = values["dagster-user-deployments"]["deployments"]
    args = deployment["codeServerArgs"]
    assert args[args.index("--python-file") + 1] == f"{layout.CODE_DIR}/definitions.py"
    assert args[args.index("--working-directory") + 1] == layout.CODE_DIR
    security = deployment["podSecurityContext"]
    assert (security["runAsUser"], security["runAsGroup"], security["fsGroup"]) == (
        layout.IMAGE_UID,
        layout.IMAGE_GID,
        layout.IMAGE_GID,
    )
    [code_mount] = deployment["volumeMounts"]
    assert code_mount["mountPath"] == layout.CODE_ROOT
    for container in (*deployment["initContainers"], *deployment["sidecarContainers"]):
        assert container["image"] == layout.GIT_SYNC_IMAGE
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert (env["GITSYNC_ROOT"], env["GITSYNC_LINK"]) == (layout.CODE_ROOT, layout.CODE_LINK)
    # run pods: the project's k8s settings default to the same user and checkout
    assert K8sConfig().run_as_user == layout.IMAGE_UID
    git_sync = GitSyncConfig(repository="https://git.example.com/x.git")
    assert (git_sync.mount_path, git_sync.link, git_sync.image) == (
        layout.CODE_ROOT,
        layout.CODE_LINK,
        layout.GIT_SYNC_IMAGE,
    )


def test_the_test_clusters_image_stand_in_is_the_dockerfiles_image(stages, tmp_path):
    runtime = stages[-1]
    stand_in = code_image_stand_in(tmp_path / "code", tmp_path / "home")
    assert (stand_in.uid, stand_in.gid) == (layout.IMAGE_UID, layout.IMAGE_GID)
    assert stand_in.workdir == runtime.last("WORKDIR")
    assert set(stand_in.paths) == {layout.CODE_DIR, layout.DAGSTER_HOME}
    assert stand_in.env["DAGSTER_HOME"] == runtime.env()["DAGSTER_HOME"]
    # the image's copies belong to its user, as COPY --chown and the chown in the Dockerfile make them
    assert all(path.stat().st_uid == layout.IMAGE_UID for path in stand_in.paths.values())


def test_the_chart_version_is_pinned_to_the_dagster_version_everywhere_it_is_installed():
    """The chart's version follows the dagster package's; values and runbook install that one."""
    assert layout.DAGSTER_CHART_VERSION == importlib.metadata.version("dagster")
    install = f"dagster/dagster --version {layout.DAGSTER_CHART_VERSION}"
    for path in ("docs/kubernetes.md", "helm-values/dagster-values.yaml"):
        text = (REPO_ROOT / path).read_text()
        commands = [
            line
            for line in text.splitlines()
            if "dagster/dagster" in line and "helm" in line or "dagster/dagster --version" in line
        ]
        assert commands and all(install in line for line in commands), (path, commands)
