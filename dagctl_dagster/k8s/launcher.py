"""`DagctlK8sRunLauncher`: dagster-k8s's run launcher plus per-project platform injections.

Configure it in ``dagster.yaml`` (or the Helm chart's ``runLauncher.config.customRunLauncher``)::

    run_launcher:
      module: dagctl_dagster.k8s.launcher
      class: DagctlK8sRunLauncher
      config:
        dagctl_config_path: /opt/dagster/dagctl/config.yaml   # or env DAGCTL_CONFIG
        # ...every K8sRunLauncher setting (instance_config_map, postgres_password_secret, ...)

A run belongs to the project named by its ``dagctl/project`` tag (jobs built by
``load_definitions`` carry it), else to the project whose name prefixes the job name
(``<project>_...``). Runs of no project are launched exactly as dagster-k8s does.
Health checks, termination and resume are dagster-k8s's own; they see the project's
namespace because :meth:`get_container_context_for_run` includes the project.

On top of dagster-k8s, for a platform engineer:

- a run carrying ``dagctl/code_revision`` (the commit its code server loaded) clones exactly
  that commit in its git-sync init container, not the branch head at pod start;
- ``fail_pod_on_run_failure`` defaults to true: a Job whose run failed ends failed;
- a pod that cannot start fails its run within seconds, with Kubernetes' reason, and its
  Job is deleted (:mod:`~dagctl_dagster.k8s.start_watch`);
- when run monitoring finds a run's worker gone, the run's model claims are released in
  that same check, not when another run next claims the models.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from dagster import Field, Noneable, StringSource

from dagctl_dagster.extras import K8S_USERS, missing_extra

try:
    from dagster_k8s import K8sRunLauncher
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.utils import get_deployment_id_label
except ModuleNotFoundError as missing:
    raise missing_extra("k8s", K8S_USERS) from missing

from dagctl_dagster.config import CONFIG_ENV_VAR, LoadedConfig, ProjectConfig, load_config
from dagctl_dagster.k8s.manifest import build_run_job, context_for_project, manifest_namespace
from dagctl_dagster.k8s.revision import is_commit
from dagctl_dagster.k8s.start_watch import StartWatcher
from dagctl_dagster.names import CODE_REVISION_TAG, PROJECT_TAG
from dagctl_dagster.run_identity import project_of_run

# dagster's DOCKER_IMAGE_TAG (kept literal: dagster._core is off limits outside execution/).
_IMAGE_TAG = "dagster/image"


class DagctlLaunchError(Exception):
    """A run cannot be matched to its project's Kubernetes settings."""


class DagctlK8sRunLauncher(K8sRunLauncher):
    """Launches each run as a Kubernetes Job carrying its project's ``k8s:`` settings.

    On top of :class:`dagster_k8s.K8sRunLauncher`: a git-sync init container for SQLMesh
    projects (image-based dbt projects get none), ``envFrom`` the project's ConfigMaps and
    Secrets, the SQLMesh state DB password as a ``secretKeyRef``, resources,
    ``MAX_CONCURRENT_MODELS``, ``dagctl.io/*`` labels and annotations, a non-root
    securityContext, ``backoffLimit: 0`` and ``ttlSecondsAfterFinished``.

    Args:
        dagctl_config_path: the ``.dagctl/config.yaml`` to read projects from; defaults to
            ``$DAGCTL_CONFIG``. Re-read whenever the file changes.
        **kwargs: every :class:`~dagster_k8s.K8sRunLauncher` argument.
    """

    def __init__(self, dagctl_config_path: str | None = None, **kwargs: Any):
        config_path = dagctl_config_path or os.environ.get(CONFIG_ENV_VAR)
        if not config_path:
            raise DagctlLaunchError(
                "DagctlK8sRunLauncher needs the dagctl config: set `dagctl_config_path` in the "
                f"run launcher's config or the {CONFIG_ENV_VAR} environment variable"
            )
        self.dagctl_config_path = Path(config_path)
        self._loaded: tuple[int, LoadedConfig] | None = None
        if kwargs.get("fail_pod_on_run_failure") is None:
            kwargs["fail_pod_on_run_failure"] = True
        super().__init__(**kwargs)
        self._start_watcher: StartWatcher | None = None

    @classmethod
    def config_type(cls):
        return {
            **K8sRunLauncher.config_type(),
            "dagctl_config_path": Field(
                Noneable(StringSource),
                is_required=False,
                default_value=None,
                description=f"Path of .dagctl/config.yaml; defaults to ${CONFIG_ENV_VAR}.",
            ),
        }

    def dagctl_config(self) -> LoadedConfig:
        """The config file, parsed again only when it changed on disk."""
        try:
            mtime = self.dagctl_config_path.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = -1  # load_config raises the ConfigError that names the file
        if self._loaded is None or self._loaded[0] != mtime:
            self._loaded = (mtime, load_config(self.dagctl_config_path, check_paths=False))
        return self._loaded[1]

    def project_for_run(self, run: dg.DagsterRun) -> ProjectConfig | None:
        """The run's project (:func:`~dagctl_dagster.run_identity.project_of_run`), else None.

        A run tagged with a project the config does not have is refused: launched without
        its project's settings, it would run without its secrets and limits.
        """
        loaded = self.dagctl_config()
        match = project_of_run(loaded.config, run.job_name, run.tags)
        if match.unknown_tag is not None:
            raise DagctlLaunchError(
                f"run {run.run_id} of job '{run.job_name}' has tag {PROJECT_TAG}={match.unknown_tag}, but "
                f"{loaded.path}: no project named '{match.unknown_tag}' (known: "
                f"{', '.join(p.name for p in loaded.projects)}); fix the tag or add the project to the config"
            )
        return match.project

    def get_container_context_for_run(self, dagster_run: dg.DagsterRun) -> K8sContainerContext:
        base = super().get_container_context_for_run(dagster_run)
        return context_for_project(
            base,
            self.project_for_run(dagster_run),
            self.dagctl_config().config.k8s_defaults,
            revision_of_run(dagster_run),
        )

    def check_run_worker_health(self, run: dg.DagsterRun):
        """dagster-k8s's check; a worker found gone also has its model claims released now.

        Run monitoring fails (or resumes) the run on this result. Either way the dead
        worker's claims would otherwise block other runs until their leases expire.
        """
        from dagctl_dagster.execution.dagster_adapter import run_worker_failed

        result = super().check_run_worker_health(run)
        if run_worker_failed(result) and not run.is_finished:
            self._release_claims(run, result.msg or "run worker gone")
        return result

    def _release_claims(self, run: dg.DagsterRun, why: str) -> None:
        from dagctl_dagster.execution.claims import ClaimStore

        store = ClaimStore.from_environment(instance=self._instance)
        try:
            released = store.release(run.run_id)
        finally:
            store.dispose()
        if released:
            self._instance.report_engine_event(
                f"Released {released} model claim(s) of run {run.run_id}: its Kubernetes run worker is gone ({why}).",
                run,
                cls=self.__class__,
            )

    def dispose(self) -> None:
        if self._start_watcher is not None:
            self._start_watcher.stop()
        super().dispose()

    def start_watcher(self) -> StartWatcher:
        if self._start_watcher is None:
            self._start_watcher = StartWatcher(
                self._instance, self._api_client, float(self._instance.run_monitoring_start_timeout_seconds or 300)
            )
        return self._start_watcher

    def _launch_k8s_job_with_args(self, job_name: str, args: Sequence[str] | None, run: dg.DagsterRun) -> None:
        project = self.project_for_run(run)
        container_context = context_for_project(
            super().get_container_context_for_run(run),
            project,
            self.dagctl_config().config.k8s_defaults,
            revision_of_run(run),
        )
        job_origin = run.job_code_origin
        if job_origin is None:
            raise DagctlLaunchError(
                f"run {run.run_id} has no code origin; only runs of a code location can be launched"
            )
        labels: dict[str, str] = {}
        deployment_name = get_deployment_id_label(container_context.run_k8s_config)
        if deployment_name:
            labels["dagster/deployment-name"] = deployment_name
        if run.remote_job_origin:
            labels["dagster/code-location"] = run.remote_job_origin.repository_origin.code_location_origin.location_name

        job = build_run_job(
            project=project,
            container_context=container_context,
            job_config=container_context.get_k8s_job_config(
                job_image=job_origin.repository_origin.container_image, run_launcher=self
            ),
            run_id=run.run_id,
            dagster_job_name=job_origin.job_name,
            args=args,
            k8s_job_name=job_name,
            extra_labels=labels,
        )
        self._instance.add_run_tags(run.run_id, {_IMAGE_TAG: job.spec.template.spec.containers[0].image})
        namespace = manifest_namespace(container_context)
        self._report_run_worker_creating(run, job_name, namespace)
        self._api_client.create_namespaced_job_with_retries(body=job, namespace=namespace)
        self._report_run_worker_created(run)
        self.start_watcher().watch(run.run_id, namespace, job_name)


def revision_of_run(run: dg.DagsterRun) -> str | None:
    """The commit the run's code server loaded (its ``dagctl/code_revision`` tag), if any.

    Raises:
        DagctlLaunchError: the tag is not a full commit id (git-sync would treat it as a branch).
    """
    revision = run.tags.get(CODE_REVISION_TAG)
    if revision is not None and not is_commit(revision):
        raise DagctlLaunchError(
            f"run {run.run_id} has tag {CODE_REVISION_TAG}={revision[:80]!r}, which is not a full git "
            "commit id; remove the tag (the run then clones the configured ref) or set the commit"
        )
    return revision
