"""The Kubernetes Job of one Dagster run: the one place it is built.

:class:`~dagctl_dagster.k8s.launcher.DagctlK8sRunLauncher` and ``dagctl-dagster k8s render``
both call :func:`build_run_job`. What a platform's admission policy would inject for a
project (git-sync, envFrom, the state DB password reference, resources, labels, a
non-root securityContext, ``backoffLimit``/``ttlSecondsAfterFinished``) is expressed as a
dagster-k8s :class:`~dagster_k8s.container_context.K8sContainerContext` by
:func:`project_container_context` and merged over the launcher's own context, so every
dagster-k8s setting (instance config map, Postgres secret, ``dagster-k8s/config`` tags)
keeps working.

Usage::

    from dagctl_dagster.config import load_config
    from dagctl_dagster.k8s.manifest import render_run_job

    loaded = load_config(".dagctl/config.yaml", check_paths=False)
    print(render_run_job(loaded.config.project("analytics"), run_id="...", image="my/image:1"))

Secret values never enter a manifest: the project config can only *name* Secrets, and
:func:`check_no_literal_secrets` refuses a Job whose environment carries a literal value
under a secret-looking name (as dagster-k8s's ``env_vars: ["SLACK_BOT_TOKEN"]`` would,
by copying the launcher's own environment).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from dagctl_dagster.extras import K8S_USERS, missing_extra

try:
    import kubernetes.client
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import (
        DAGSTER_HOME_DEFAULT,
        DagsterK8sJobConfig,
        UserDefinedDagsterK8sConfig,
        construct_dagster_k8s_job,
        get_job_name_from_run_id,
    )
except ModuleNotFoundError as missing:
    raise missing_extra("k8s", K8S_USERS) from missing

from dagctl_dagster.config import GitSyncConfig, K8sDefaults, ProjectConfig, ResourcesConfig
from dagctl_dagster.run_identity import JobKind, job_name
from dagctl_dagster.secrets import is_secret_name

PROJECT_LABEL = "dagctl.io/project"
FRAMEWORK_LABEL = "dagctl.io/framework"
RUN_ID_LABEL = "dagctl.io/run-id"

MAX_CONCURRENT_MODELS_ENV = "MAX_CONCURRENT_MODELS"
STATE_DB_PASSWORD_ENV = "SQLMESH_STATE_PASSWORD"
GIT_CREDENTIAL_KEYS = ("GITSYNC_USERNAME", "GITSYNC_PASSWORD")

CODE_VOLUME = "dagctl-code"
GIT_SYNC_CONTAINER = "git-sync"


class LiteralSecretError(ValueError):
    """A Job would carry a secret value literally instead of referencing a Secret."""


@dataclass(frozen=True)
class LauncherSettings:
    """The dagster-k8s launcher settings `k8s render` assumes (no instance at hand).

    The defaults are what the Dagster Helm chart (release ``dagster``) and
    ``helm-values/dagster-values.yaml`` give the launcher.
    """

    namespace: str = "dagster"
    service_account_name: str = "dagster"
    instance_config_map: str = "dagster-instance"
    postgres_password_secret: str = "dagster-postgresql-secret"
    dagster_home: str = DAGSTER_HOME_DEFAULT
    image_pull_policy: str = "IfNotPresent"

    def container_context(self) -> K8sContainerContext:
        return K8sContainerContext(
            namespace=self.namespace,
            service_account_name=self.service_account_name,
            image_pull_policy=self.image_pull_policy,
        )

    def job_config(self, image: str | None) -> DagsterK8sJobConfig:
        return DagsterK8sJobConfig(
            job_image=image,
            dagster_home=self.dagster_home,
            instance_config_map=self.instance_config_map,
            postgres_password_secret=self.postgres_password_secret,
            image_pull_policy=self.image_pull_policy,
        )


def project_container_context(
    project: ProjectConfig, defaults: K8sDefaults | None = None, revision: str | None = None
) -> K8sContainerContext:
    """What the platform injects into every run Job of ``project``, from its ``k8s:`` block.

    Resources: the project's quantities, each one it leaves unset taken from ``defaults``
    (the config's top-level ``k8s_defaults``), so no run pod goes without requests and limits.
    git-sync: the project's, else the code location's (``k8s_defaults.git_sync``), for every
    framework, cloning ``revision`` (the commit the code server loaded) when given.
    Deep-merged over the launcher's context (lists append, the project's scalars win), so
    the project's securityContext and Job limits override a run's ``dagster-k8s/config`` tags.
    """
    k8s = project.k8s
    defaults = defaults or K8sDefaults()
    git_sync = k8s.git_sync or defaults.git_sync
    labels = {**k8s.labels, PROJECT_LABEL: project.name, FRAMEWORK_LABEL: project.framework}
    annotations = {**k8s.annotations, PROJECT_LABEL: project.name, FRAMEWORK_LABEL: project.framework}

    container_config: dict[str, Any] = {}
    pod_spec_config: dict[str, Any] = {"security_context": _pod_security_context(k8s.run_as_user)}
    volumes: list[dict[str, Any]] = []
    volume_mounts: list[dict[str, Any]] = []

    if k8s.image:
        container_config["image"] = k8s.image
    if git_sync is not None:
        volumes.append({"name": CODE_VOLUME, "empty_dir": {}})
        volume_mounts.append({"name": CODE_VOLUME, "mount_path": git_sync.mount_path})
        pod_spec_config["init_containers"] = [git_sync_init_container(git_sync, k8s.run_as_user, revision)]

    env: list[dict[str, Any]] = [{"name": MAX_CONCURRENT_MODELS_ENV, "value": str(k8s.max_concurrent_models)}]
    if k8s.state_db_password is not None:
        env.append(_secret_env(STATE_DB_PASSWORD_ENV, k8s.state_db_password.secret, k8s.state_db_password.key))
    if k8s.service_account:
        pod_spec_config["service_account_name"] = k8s.service_account

    return K8sContainerContext(
        namespace=k8s.namespace,
        env_config_maps=k8s.env_config_maps,
        env_secrets=k8s.env_secrets,
        env=env,
        volumes=volumes,
        volume_mounts=volume_mounts,
        labels=labels,
        resources=resource_requirements(k8s.resources.over(defaults.resources)),
        security_context=container_security_context(k8s.run_as_user),
        run_k8s_config=UserDefinedDagsterK8sConfig(
            container_config=container_config,
            pod_spec_config=pod_spec_config,
            pod_template_spec_metadata={"annotations": annotations},
            job_metadata={"annotations": annotations},
            job_spec_config={
                "backoff_limit": 0,
                "ttl_seconds_after_finished": k8s.ttl_seconds_after_finished,
            },
        ),
    )


def context_for_project(
    base: K8sContainerContext,
    project: ProjectConfig | None,
    defaults: K8sDefaults | None = None,
    revision: str | None = None,
) -> K8sContainerContext:
    """The launcher's context for a run with the project's injections merged on top."""
    if project is None:
        return base
    return base.merge(project_container_context(project, defaults, revision))


def git_sync_init_container(git_sync: GitSyncConfig, run_as_user: int, revision: str | None = None) -> dict[str, Any]:
    """A one-shot, depth-1 git-sync clone of ``revision`` (else ``ref``) into the shared code volume."""
    env: list[dict[str, Any]] = [
        {"name": "GITSYNC_REPO", "value": git_sync.repository},
        {"name": "GITSYNC_REF", "value": revision or git_sync.ref},
        {"name": "GITSYNC_ROOT", "value": git_sync.mount_path},
        {"name": "GITSYNC_LINK", "value": git_sync.link},
        {"name": "GITSYNC_DEPTH", "value": "1"},
        {"name": "GITSYNC_ONE_TIME", "value": "true"},
    ]
    if git_sync.credentials_secret:
        env.extend(_secret_env(key, git_sync.credentials_secret, key) for key in GIT_CREDENTIAL_KEYS)
    return {
        "name": GIT_SYNC_CONTAINER,
        "image": git_sync.image,
        "image_pull_policy": "IfNotPresent",
        "env": env,
        "volume_mounts": [{"name": CODE_VOLUME, "mount_path": git_sync.mount_path}],
        "security_context": container_security_context(run_as_user),
    }


def resource_requirements(resources: ResourcesConfig) -> dict[str, dict[str, str]]:
    """``resources:`` of the run container, leaving out what the config leaves unset."""
    requirements = {
        kind: {name: value for name, value in quantities.model_dump().items() if value is not None}
        for kind, quantities in (("requests", resources.requests), ("limits", resources.limits))
    }
    return {kind: quantities for kind, quantities in requirements.items() if quantities}


def container_security_context(run_as_user: int) -> dict[str, Any]:
    return {
        "run_as_non_root": True,
        "run_as_user": run_as_user,
        "run_as_group": run_as_user,
        "allow_privilege_escalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccomp_profile": {"type": "RuntimeDefault"},
    }


def _pod_security_context(run_as_user: int) -> dict[str, Any]:
    # fsGroup makes the git-sync emptyDir writable for the run container (SQLMesh cache, logs).
    return {
        "run_as_non_root": True,
        "run_as_user": run_as_user,
        "run_as_group": run_as_user,
        "fs_group": run_as_user,
        "seccomp_profile": {"type": "RuntimeDefault"},
    }


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "value_from": {"secret_key_ref": {"name": secret, "key": key}}}


def build_run_job(
    *,
    project: ProjectConfig | None,
    container_context: K8sContainerContext,
    job_config: DagsterK8sJobConfig,
    run_id: str,
    dagster_job_name: str,
    args: Sequence[str] | None,
    k8s_job_name: str | None = None,
    extra_labels: Mapping[str, str] | None = None,
) -> kubernetes.client.V1Job:
    """The Job that runs ``run_id``: dagster-k8s's ``construct_dagster_k8s_job`` plus the run id.

    Args:
        project: the run's project, or None for a run of no dagctl project (plain dagster-k8s).
        container_context: the launcher's context, already merged with the project's
            (:func:`context_for_project`).
        job_config: the image, DAGSTER_HOME, instance config map and Postgres secret.
        args: the run worker's command (``dagster api execute_run ...``).
        k8s_job_name: defaults to dagster-k8s's ``dagster-run-<run_id>``.

    Raises:
        LiteralSecretError: a secret-looking env var would carry a literal value.
    """
    k8s_job_name = k8s_job_name or get_job_name_from_run_id(run_id)
    labels = {"dagster/job": dagster_job_name, "dagster/run-id": run_id, **(extra_labels or {})}
    if project is not None:
        labels[RUN_ID_LABEL] = run_id
        run_annotations = {"annotations": {RUN_ID_LABEL: run_id}}
        container_context = container_context.merge(
            K8sContainerContext(
                run_k8s_config=UserDefinedDagsterK8sConfig(
                    job_metadata=run_annotations, pod_template_spec_metadata=run_annotations
                )
            )
        )
    job = construct_dagster_k8s_job(
        job_config=job_config,
        args=args,
        job_name=k8s_job_name,
        pod_name=k8s_job_name,
        component="run_worker",
        user_defined_k8s_config=container_context.run_k8s_config,
        labels=labels,
        env_vars=[{"name": "DAGSTER_RUN_JOB_NAME", "value": dagster_job_name}],
    )
    check_no_literal_secrets(job)
    return job


def check_no_literal_secrets(job: kubernetes.client.V1Job) -> None:
    """Refuse a Job whose containers set a secret-looking env var to a literal value."""
    spec = job.spec.template.spec
    for container in [*(spec.init_containers or []), *spec.containers]:
        for env in container.env or []:
            if env.value is not None and is_secret_name(env.name):
                raise LiteralSecretError(
                    f"Job {job.metadata.name}: env var {env.name} of container '{container.name}' "
                    "would carry a literal value; put it in a Kubernetes Secret and list the Secret "
                    "in the project's k8s.env_secrets (or the launcher's env_secrets) instead of "
                    "env_vars"
                )


def manifest_dict(job: kubernetes.client.V1Job) -> dict[str, Any]:
    """The Job as the API server receives it (camelCase keys, no nulls)."""
    return kubernetes.client.ApiClient().sanitize_for_serialization(job)


def manifest_namespace(container_context: K8sContainerContext) -> str:
    return container_context.namespace or "default"


PLACEHOLDER_RUN_ID = "00000000-0000-0000-0000-000000000000"
PLACEHOLDER_IMAGE = "CODE_LOCATION_IMAGE"
# The launcher passes `dagster api execute_run <serialized ExecuteRunArgs>`; the serialized
# part needs a stored run, so render shows where it goes.
PLACEHOLDER_ARGS = ("dagster", "api", "execute_run", "<ExecuteRunArgs of the run>")


def render_run_job(
    project: ProjectConfig,
    *,
    run_id: str = PLACEHOLDER_RUN_ID,
    image: str | None = None,
    settings: LauncherSettings = LauncherSettings(),
    defaults: K8sDefaults | None = None,
) -> dict[str, Any]:
    """The Job manifest the launcher would create for a run of ``project``, without a cluster.

    The image is ``image``, else the project's ``k8s.image``, else a placeholder for the
    code location's image (which the launcher takes from the run's code origin).
    """
    context = context_for_project(settings.container_context(), project, defaults)
    job = build_run_job(
        project=project,
        container_context=context,
        job_config=settings.job_config(image or project.k8s.image or PLACEHOLDER_IMAGE),
        run_id=run_id,
        dagster_job_name=job_name(project, JobKind.RUN),
        args=list(PLACEHOLDER_ARGS),
    )
    manifest = manifest_dict(job)
    manifest["metadata"]["namespace"] = manifest_namespace(context)
    return manifest


def manifest_yaml(manifest: Mapping[str, Any]) -> str:
    return yaml.safe_dump(dict(manifest), sort_keys=False)
