"""`helm-values/dagster-values.yaml` checked against this package and the bundled config."""

from __future__ import annotations

import importlib
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster_k8s import K8sRunLauncher
from dagster_k8s.job import DAGSTER_PG_PASSWORD_SECRET_KEY

from dagctl_dagster.alerts.slack import TOKEN_ENV_VAR as SLACK_TOKEN_ENV_VAR
from dagctl_dagster.config import GitSyncConfig, load_config
from dagctl_dagster.k8s.launcher import CONFIG_ENV_VAR, DagctlK8sRunLauncher
from dagctl_dagster.k8s.manifest import GIT_CREDENTIAL_KEYS, STATE_DB_PASSWORD_ENV, LauncherSettings
from dagctl_dagster.names import PROJECT_TAG

REPO_ROOT = Path(__file__).resolve().parent.parent
VALUES_PATH = REPO_ROOT / "helm-values" / "dagster-values.yaml"

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load(VALUES_PATH.read_text())


def _launcher_block(values: dict) -> dict:
    assert values["runLauncher"]["type"] == "CustomRunLauncher"
    return values["runLauncher"]["config"]["customRunLauncher"]


def _deployment(values: dict) -> dict:
    [deployment] = values["dagster-user-deployments"]["deployments"]
    return deployment


def _env(entries: list[dict]) -> dict[str, dict]:
    return {entry["name"]: entry for entry in entries}


def test_launcher_class_path_imports_the_dagctl_launcher(values):
    block = _launcher_block(values)
    launcher_class = getattr(importlib.import_module(block["module"]), block["class"])
    assert launcher_class is DagctlK8sRunLauncher
    assert issubclass(launcher_class, K8sRunLauncher)


def test_launcher_config_is_accepted_by_the_launchers_schema(values, tmp_path):
    """Build an instance from the values' launcher block, as the chart's dagster.yaml does."""
    block = _launcher_block(values)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n"
        "users: [{name: u, user: {}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
        "current-context: x\n"
    )
    # in-cluster config is unavailable here; everything else is taken as written
    config = {**block["config"], "load_incluster_config": False, "kubeconfig_file": str(kubeconfig)}
    home = tmp_path / "home"
    home.mkdir()
    with dg.instance_for_test(
        overrides={"run_launcher": {"module": block["module"], "class": block["class"], "config": config}},
        temp_dir=str(home),
    ) as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, DagctlK8sRunLauncher)
        assert str(launcher.dagctl_config_path) == block["config"]["dagctl_config_path"]
        assert launcher.postgres_password_secret == values["global"]["postgresqlSecretName"]
        assert launcher.instance_config_map == "dagster-instance"  # <release>-instance, release `dagster`


def test_render_defaults_match_the_helm_launcher(values):
    config = _launcher_block(values)["config"]
    settings = LauncherSettings()
    assert config["job_namespace"] == settings.namespace
    assert config["service_account_name"] == settings.service_account_name
    assert config["instance_config_map"] == settings.instance_config_map
    assert config["postgres_password_secret"] == settings.postgres_password_secret
    assert config["dagster_home"] == settings.dagster_home


def test_dagster_postgres_password_comes_from_an_existing_secret(values):
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["postgresql"]["enabled"] is False
    assert values["global"]["postgresqlSecretName"] == "dagster-postgresql-secret"
    assert DAGSTER_PG_PASSWORD_SECRET_KEY == "postgresql-password"  # the key the README tells users to set
    assert values["postgresql"]["postgresqlPassword"] == ""


def test_daemon_and_webserver_mount_the_config_the_launcher_reads(values):
    config_path = Path(_launcher_block(values)["config"]["dagctl_config_path"])
    for component in ("dagsterDaemon", "dagsterWebserver"):
        section = values[component]
        [mount] = section["volumeMounts"]
        [volume] = section["volumes"]
        assert Path(mount["mountPath"]) == config_path.parent
        assert config_path.name == "config.yaml"
        assert volume == {"name": mount["name"], "configMap": {"name": "dagctl-config"}}


def test_every_overlap_forbid_project_has_a_tag_concurrency_limit_of_one(values):
    coordinator = values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] is True
    assert coordinator["type"] == "QueuedRunCoordinator"
    limits = coordinator["config"]["queuedRunCoordinator"]["tagConcurrencyLimits"]
    loaded = load_config(REPO_ROOT / ".dagctl" / "config.yaml", check_paths=False)
    forbid = {project.name for project in loaded.projects if project.overlap == "forbid"}
    assert forbid, "the bundled config has no `overlap: forbid` project; the check would be empty"
    assert sorted(limits, key=lambda entry: entry["value"]) == [
        {"key": PROJECT_TAG, "value": name, "limit": 1} for name in sorted(forbid)
    ]


def test_daemon_runs_schedules_sensors_and_run_monitoring(values):
    daemon = values["dagsterDaemon"]
    assert daemon["enabled"] is True
    assert daemon["schedules"]["useThreads"] is True
    assert daemon["sensors"]["useThreads"] is True
    monitoring = daemon["runMonitoring"]
    assert monitoring["enabled"] is True
    assert monitoring["maxResumeRunAttempts"] == 0  # a dead worker fails its run, freeing its claims
    assert monitoring["pollIntervalSeconds"] > 0


def test_code_server_loads_from_the_path_runs_mount(values):
    deployment = _deployment(values)
    defaults = GitSyncConfig.model_fields
    checkout = Path(defaults["mount_path"].default) / defaults["link"].default
    args = deployment["codeServerArgs"]
    assert Path(args[args.index("--python-file") + 1]) == checkout / "definitions.py"
    env = _env(deployment["env"])
    assert Path(env[CONFIG_ENV_VAR]["value"]) == checkout / ".dagctl" / "config.yaml"
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": False}
    [mount] = deployment["volumeMounts"]
    assert mount["mountPath"] == defaults["mount_path"].default
    for container in (*deployment["initContainers"], *deployment["sidecarContainers"]):
        git_env = _env(container["env"])
        assert git_env["GITSYNC_ROOT"]["value"] == defaults["mount_path"].default
        assert git_env["GITSYNC_LINK"]["value"] == defaults["link"].default
        assert git_env["GITSYNC_DEPTH"]["value"] == "1"
        for key in GIT_CREDENTIAL_KEYS:
            assert git_env[key]["valueFrom"]["secretKeyRef"] == {"name": "git-credentials", "key": key}
        assert container["volumeMounts"] == [{"name": mount["name"], "mountPath": mount["mountPath"]}]


def test_code_server_secrets_are_references_with_the_names_the_code_reads(values):
    deployment = _deployment(values)
    env = _env(deployment["env"])
    assert env[STATE_DB_PASSWORD_ENV]["valueFrom"]["secretKeyRef"] == {"name": "sqlmesh-state-db", "key": "password"}
    assert SLACK_TOKEN_ENV_VAR == "SLACK_BOT_TOKEN"
    assert {"name": "slack-bot"} in deployment["envSecrets"]
    # no literal value anywhere under a secret-looking name
    for container_env in [deployment["env"], *[c["env"] for c in deployment["sidecarContainers"]]]:
        for entry in container_env:
            if any(word in entry["name"] for word in ("PASSWORD", "TOKEN", "SECRET")):
                assert "value" not in entry, entry["name"]


def test_the_kubernetes_runbook_names_every_secret_the_values_reference():
    runbook = (REPO_ROOT / "docs" / "kubernetes.md").read_text()
    section = runbook[runbook.index("## Deploying on Kubernetes") :]
    for name in (
        "dagster-postgresql-secret",
        "postgresql-password",
        "sqlmesh-state-db",
        "git-credentials",
        "GITSYNC_USERNAME",
        "GITSYNC_PASSWORD",
        "slack-bot",
        "SLACK_BOT_TOKEN",
        "dagctl-config",
    ):
        assert name in section, name
