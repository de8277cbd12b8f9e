"""The run Job manifest: what each project's `k8s:` block injects, strict schema validation, render CLI."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from dagster_k8s.container_context import K8sContainerContext
from k8s_stub import FULL_CONFIG, MINIMAL_CONFIG, SECRET_VALUES, write_config

from dagctl_dagster.cli import main
from dagctl_dagster.config import ConfigError, load_config
from dagctl_dagster.k8s.manifest import (
    LauncherSettings,
    LiteralSecretError,
    build_run_job,
    context_for_project,
    render_run_job,
)

K8S_VERSION = "1.37"
RUN_ID = "3f2b8c1e-5d7a-4e0b-9a61-0c4d2e8f7a90"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def full(tmp_path: Path):
    return load_config(write_config(tmp_path / "full", FULL_CONFIG), check_paths=False)


@pytest.fixture
def minimal(tmp_path: Path):
    return load_config(write_config(tmp_path / "minimal", MINIMAL_CONFIG), check_paths=False)


@pytest.fixture(autouse=True)
def secrets_in_environment(monkeypatch):
    """The renderer's process has the secret values, as a daemon pod would."""
    for name, value in SECRET_VALUES.items():
        monkeypatch.setenv(name, value)


def _render(project, **kwargs) -> dict:
    return render_run_job(project, run_id=RUN_ID, image="registry.example.com/code:7", **kwargs)


def _container(manifest: dict, name: str = "dagster") -> dict:
    return next(c for c in manifest["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def _env(container: dict) -> dict[str, dict]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def test_every_example_manifest_passes_strict_validation(full, minimal):
    rendered = 0
    for loaded in (full, minimal):
        for project in loaded.projects:
            manifest = _render(project)
            kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
            rendered += 1
    assert rendered == 6


def test_strict_validation_rejects_a_misspelt_field(full):
    manifest = _render(full.config.project("analytics"))
    broken = copy.deepcopy(manifest)
    broken["spec"]["template"]["spec"]["initContainers"][0]["volumeMount"] = []
    with pytest.raises(kubernetes_validate.ValidationError, match="volumeMount"):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_sqlmesh_project_clones_its_code_with_a_git_sync_init_container(full):
    manifest = _render(full.config.project("analytics"))
    pod = manifest["spec"]["template"]["spec"]
    [init] = pod["initContainers"]
    env = _env(init)
    assert init["image"] == "registry.k8s.io/git-sync/git-sync:v4.4.0"
    assert env["GITSYNC_REPO"]["value"] == "https://git.example.com/data/platform.git"
    assert env["GITSYNC_REF"]["value"] == "v1.2.3"
    assert env["GITSYNC_DEPTH"]["value"] == "1"
    assert env["GITSYNC_ONE_TIME"]["value"] == "true"
    assert env["GITSYNC_ROOT"]["value"] == "/opt/dagster/projects"
    assert env["GITSYNC_LINK"]["value"] == "repo"
    for key in ("GITSYNC_USERNAME", "GITSYNC_PASSWORD"):
        assert env[key] == {"name": key, "valueFrom": {"secretKeyRef": {"name": "git-credentials", "key": key}}}
    assert pod["volumes"] == [{"name": "dagctl-code", "emptyDir": {}}]
    assert init["volumeMounts"] == [{"name": "dagctl-code", "mountPath": "/opt/dagster/projects"}]
    assert _container(manifest)["volumeMounts"] == [{"name": "dagctl-code", "mountPath": "/opt/dagster/projects"}]
    assert _container(manifest)["image"] == "registry.example.com/code:7"


def test_public_repository_clone_needs_no_credentials(full):
    [init] = _render(full.config.project("analytics_public"))["spec"]["template"]["spec"]["initContainers"]
    assert "GITSYNC_PASSWORD" not in _env(init)
    assert _env(init)["GITSYNC_REF"]["value"] == "main"


def test_dbt_project_runs_from_its_own_image_without_git_sync(full):
    manifest = _render(full.config.project("marts"))
    pod = manifest["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    assert pod["volumes"] == []
    assert _container(manifest)["image"] == "registry.example.com/marts:1.0"
    assert _container(manifest)["envFrom"] == [{"secretRef": {"name": "marts-warehouse"}}]
    # the project's memory limit, the platform defaults for everything it leaves unset
    assert _container(manifest)["resources"] == {
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"cpu": "1", "memory": "2Gi"},
    }


def test_every_project_clones_the_code_locations_repository_from_k8s_defaults(tmp_path):
    """A git-synced code location loads definitions.py from the checkout: dbt runs need it too."""
    text = MINIMAL_CONFIG.replace(
        "projects:\n",
        "k8s_defaults:\n  git_sync: {repository: https://git.example.com/platform.git, ref: release}\nprojects:\n",
    )
    loaded = load_config(write_config(tmp_path, text), check_paths=False)
    for project in loaded.projects:
        manifest = render_run_job(project, image="code:1", defaults=loaded.config.k8s_defaults)
        [init] = manifest["spec"]["template"]["spec"]["initContainers"]
        env = {e["name"]: e.get("value") for e in init["env"]}
        assert (env["GITSYNC_REPO"], env["GITSYNC_REF"]) == ("https://git.example.com/platform.git", "release")
        assert _container(manifest)["volumeMounts"][-1]["mountPath"] == "/opt/dagster/projects"


def test_a_runs_revision_pins_its_clone(full):
    revision = "0123456789abcdef0123456789abcdef01234567"
    context = context_for_project(
        LauncherSettings().container_context(), full.config.project("analytics"), revision=revision
    )
    [init] = context.run_k8s_config.pod_spec_config["init_containers"]
    assert {"name": "GITSYNC_REF", "value": revision} in init["env"]


def test_env_from_config_maps_and_secrets_and_state_password_by_reference(full):
    container = _container(_render(full.config.project("analytics")))
    assert container["envFrom"] == [
        {"configMapRef": {"name": "analytics-env"}},
        {"secretRef": {"name": "analytics-secrets"}},
        {"secretRef": {"name": "slack-bot"}},
    ]
    env = _env(container)
    assert env["SQLMESH_STATE_PASSWORD"] == {
        "name": "SQLMESH_STATE_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "sqlmesh-state-db", "key": "password"}},
    }
    assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "dagster-postgresql-secret",
        "key": "postgresql-password",
    }
    assert env["MAX_CONCURRENT_MODELS"] == {"name": "MAX_CONCURRENT_MODELS", "value": "8"}
    assert env["DAGSTER_RUN_JOB_NAME"]["value"] == "analytics_run"


def test_resources_labels_annotations_security_and_job_limits(full):
    manifest = _render(full.config.project("analytics"))
    container = _container(manifest)
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "2", "memory": "4Gi"},
    }
    for metadata in (manifest["metadata"], manifest["spec"]["template"]["metadata"]):
        assert metadata["labels"]["dagctl.io/project"] == "analytics"
        assert metadata["labels"]["dagctl.io/framework"] == "sqlmesh"
        assert metadata["labels"]["dagctl.io/run-id"] == RUN_ID
        assert metadata["labels"]["dagster/run-id"] == RUN_ID
        assert metadata["labels"]["team"] == "data"
        assert metadata["annotations"] == {
            "owner": "data-team",
            "dagctl.io/project": "analytics",
            "dagctl.io/framework": "sqlmesh",
            "dagctl.io/run-id": RUN_ID,
        }
    assert manifest["metadata"]["name"] == f"dagster-run-{RUN_ID}"
    assert manifest["metadata"]["namespace"] == "data"
    assert manifest["spec"]["backoffLimit"] == 0
    assert manifest["spec"]["ttlSecondsAfterFinished"] == 600
    pod = manifest["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "analytics-runner"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["fsGroup"] == 1000
    for c in [*pod["initContainers"], *pod["containers"]]:
        assert c["securityContext"]["runAsNonRoot"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_minimal_project_gets_defaults(minimal):
    manifest = _render(minimal.config.project("analytics"))
    pod = manifest["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    assert manifest["metadata"]["namespace"] == LauncherSettings().namespace
    assert manifest["spec"]["ttlSecondsAfterFinished"] == 3600
    assert _env(_container(manifest))["MAX_CONCURRENT_MODELS"]["value"] == "5"
    # no `resources:` anywhere: the built-in platform defaults, never a pod without limits
    assert _container(manifest)["resources"] == {
        "requests": {"cpu": "250m", "memory": "512Mi"},
        "limits": {"cpu": "1", "memory": "2Gi"},
    }
    assert "SQLMESH_STATE_PASSWORD" not in _env(_container(manifest))


def test_platform_security_context_wins_over_run_tags(full):
    """A run's `dagster-k8s/config` cannot switch privilege escalation back on."""
    from dagster_k8s.job import UserDefinedDagsterK8sConfig

    project = full.config.project("analytics")
    user_context = K8sContainerContext(
        namespace="data",
        run_k8s_config=UserDefinedDagsterK8sConfig(
            container_config={"security_context": {"allow_privilege_escalation": True, "run_as_user": 0}},
            job_spec_config={"backoff_limit": 6},
        ),
    )
    context = context_for_project(user_context, project)
    job = build_run_job(
        project=project,
        container_context=context,
        job_config=LauncherSettings().job_config("img:1"),
        run_id=RUN_ID,
        dagster_job_name="analytics_run",
        args=["dagster"],
    )
    security = job.spec.template.spec.containers[0].security_context
    assert security.allow_privilege_escalation is False
    assert security.run_as_user == 1000
    assert job.spec.backoff_limit == 0


def test_literal_secret_in_env_is_refused(full):
    """dagster-k8s's `env_vars: [SLACK_BOT_TOKEN]` copies the launcher's value; refuse that."""
    context = context_for_project(K8sContainerContext(env_vars=["SLACK_BOT_TOKEN"]), full.config.project("analytics"))
    with pytest.raises(LiteralSecretError, match="SLACK_BOT_TOKEN .*k8s.env_secrets"):
        build_run_job(
            project=full.config.project("analytics"),
            container_context=context,
            job_config=LauncherSettings().job_config("img:1"),
            run_id=RUN_ID,
            dagster_job_name="analytics_run",
            args=["dagster"],
        )


def test_render_cli_prints_the_launcher_manifest_as_yaml(full, capsys):
    code = main(
        [
            "k8s",
            "render",
            "--project",
            "analytics",
            "--run-id",
            RUN_ID,
            "--config",
            str(full.path),
            "--image",
            "registry.example.com/code:7",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert yaml.safe_load(out) == _render(full.config.project("analytics"))
    for value in SECRET_VALUES.values():
        assert value not in out
    assert "secretKeyRef" in out


def test_render_cli_names_unknown_project_and_config(full, capsys):
    code = main(["k8s", "render", "--project", "nope", "--config", str(full.path)])
    err = capsys.readouterr().err
    assert code == 1
    assert str(full.path) in err
    assert "no project named 'nope'" in err and "analytics" in err


@pytest.mark.timeout(60)
def test_render_console_script_works_without_a_cluster(full, tmp_path):
    from conftest import venv_command

    result = subprocess.run(
        [venv_command("dagctl-dagster"), "k8s", "render", "--project", "marts", "--config", str(full.path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    manifest = yaml.safe_load(result.stdout)
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    assert manifest["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/marts:1.0"


DEFAULTS_CONFIG = """\
version: 1
k8s_defaults:
  resources:
    requests: {cpu: 100m, memory: 256Mi}
    limits: {memory: 1Gi}
projects:
  - name: plain
    framework: sqlmesh
    path: sqlmesh/plain
  - name: heavy
    framework: dbt
    path: dbt/heavy
    k8s:
      resources:
        requests: {memory: 4Gi}
        limits: {cpu: "4", memory: 8Gi}
"""


def test_top_level_k8s_defaults_apply_to_every_project_and_each_can_override(tmp_path, capsys):
    loaded = load_config(write_config(tmp_path, DEFAULTS_CONFIG), check_paths=False)
    defaults = loaded.config.k8s_defaults
    plain = _render(loaded.config.project("plain"), defaults=defaults)
    heavy = _render(loaded.config.project("heavy"), defaults=defaults)
    assert _container(plain)["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"memory": "1Gi"},
    }
    assert _container(heavy)["resources"] == {
        "requests": {"cpu": "100m", "memory": "4Gi"},
        "limits": {"cpu": "4", "memory": "8Gi"},
    }
    for manifest in (plain, heavy):
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    # the render CLI reads the same top-level defaults
    assert (
        main(
            [
                "k8s",
                "render",
                "--project",
                "plain",
                "--run-id",
                RUN_ID,
                "--config",
                str(loaded.path),
                "--image",
                "registry.example.com/code:7",
            ]
        )
        == 0
    )
    assert _container(yaml.safe_load(capsys.readouterr().out))["resources"] == _container(plain)["resources"]


def test_misspelt_k8s_defaults_field_is_named(tmp_path):
    path = write_config(tmp_path, DEFAULTS_CONFIG.replace("    limits: {memory: 1Gi}", "    limit: {memory: 1Gi}"))
    with pytest.raises(ConfigError) as excinfo:
        load_config(path, check_paths=False)
    assert "k8s_defaults.resources.limit" in str(excinfo.value)
    assert "unknown key" in str(excinfo.value)
