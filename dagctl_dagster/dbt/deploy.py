"""The `<project>_deploy` job of a dbt project: ``dbt build --select <scope>`` from the files on disk.

The deploy sensor launches it with the scope it computed from the git diff
(:mod:`dagctl_dagster.dbt.deploy_scope`, :func:`deploy_request`); an empty ``select`` builds
the whole project::

    ops:
      marts_deploy_op:
        config:
          select: "stg_orders+ customers+"

It runs the project's own ``DbtCliResource`` (resource ``dbt_<project>``, from the dbt asset
factory) without the code location's parsed manifest, so a model added in the deployed
commit is built even before the code location reloads and shows it as an asset.
"""

import os
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from dagctl_dagster.config import LoadedConfig, ProjectConfig
from dagctl_dagster.frameworks import Deploy
from dagctl_dagster.names import DEPLOY_CHANGED_FILES_TAG, DEPLOY_SCOPE_TAG, MAX_TAG_CHARS
from dagctl_dagster.project import single_op_job
from dagctl_dagster.run_identity import JobKind, job_name, op_name


class DbtDeployConfig(dg.Config):
    select: str = Field(default="", description="dbt --select argument; empty builds every node.")
    changed_files: list[str] = Field(
        default_factory=list, description="The files the deploy changed (set by the deploy sensor, for the record)."
    )


def build_dbt_deploy_job(loaded: LoadedConfig, project: ProjectConfig) -> dg.JobDefinition:
    """The `<project>_deploy` op job of one dbt project."""
    from dagctl_dagster.dbt.asset_factory import resource_key

    dbt_resource_key = resource_key(project.name)

    def dbt_deploy_op(context: dg.OpExecutionContext, config: DbtDeployConfig) -> dg.Output[dict]:
        dbt = getattr(context.resources, dbt_resource_key)
        return _deploy(context, dbt, project, config.select.strip(), config.changed_files)

    return single_op_job(
        JobKind.DEPLOY,
        dbt_deploy_op,
        loaded,
        project,
        f"Builds what a deploy of dbt project '{project.name}' changed (dbt build --select).",
        required_resource_keys={dbt_resource_key},
    )


def deploy_request(project: ProjectConfig, deploy: Deploy) -> dg.RunRequest | None:
    """`dbt build` of what changed since the last deployed commit; None when nothing in the
    project changed."""
    from dagctl_dagster.dbt.deploy_scope import deploy_scope

    scope = deploy_scope(deploy.loaded.project_dir(project), deploy.base_commit)
    if scope.is_empty:
        deploy.log.info(f"dbt project '{project.name}': {scope.describe()}; no deploy run")
        return None
    select = scope.select or ""
    return dg.RunRequest(
        job_name=job_name(project, JobKind.DEPLOY),
        run_key=deploy.run_key(project),
        run_config={
            "ops": {
                op_name(project, JobKind.DEPLOY): {
                    "config": {"select": select, "changed_files": list(scope.changed_files)}
                }
            }
        },
        tags={
            **deploy.tags(project),
            DEPLOY_SCOPE_TAG: scope.describe()[:MAX_TAG_CHARS],
            DEPLOY_CHANGED_FILES_TAG: ", ".join(scope.changed_files)[:MAX_TAG_CHARS] or "(unknown: full build)",
        },
    )


def _deploy(
    context: dg.OpExecutionContext, dbt: Any, project: ProjectConfig, select: str, changed_files: list[str]
) -> dg.Output[dict]:
    from dagctl_dagster.dbt.asset_factory import max_concurrent_models, prune_invocation_dirs

    args = ["build", "--threads", str(max_concurrent_models())]
    if select:
        args += ["--select", *select.split()]
    context.log.info(f"dbt {' '.join(args)} (project '{project.name}')")
    # Named like the run job's directories (<op>-<run>-<uuid>), so the newest few are kept.
    target = (
        Path(os.environ.get("DBT_TARGET_PATH", "target"))
        / f"{context.op.name}-{context.run_id[:7]}-{uuid.uuid4().hex[:7]}"
    )
    invocation = dbt.cli(args, raise_on_error=False, target_path=target)
    try:
        invocation.wait()
        return _deploy_outcome(invocation, project, select, changed_files)
    finally:
        prune_invocation_dirs(invocation.target_path)


def _deploy_outcome(invocation: Any, project: ProjectConfig, select: str, changed_files: list[str]) -> dg.Output[dict]:
    from dagctl_dagster.dbt.run_results import RunResults

    results, run_results_path = RunResults.of_invocation(invocation, f"dbt deploy of project '{project.name}'")
    statuses = Counter(node.status for node in results.nodes.values())
    built = sorted(
        n.name for n in results.nodes.values() if n.resource_type != "test" and not n.failed and not n.skipped
    )
    metadata: dict[str, Any] = {
        "select": select or "(full build)",
        "changed_files": dg.MetadataValue.json(changed_files),
        "built": dg.MetadataValue.json(built),
        "statuses": dg.MetadataValue.json(dict(statuses)),
        "run_results": dg.MetadataValue.path(str(run_results_path)),
    }
    outcome = results.outcome(invocation.manifest if _has_manifest(invocation) else {})
    if not outcome.succeeded:
        raise dg.Failure(description=outcome.failure_message(project.name), metadata=metadata)
    return dg.Output({"select": select, "built": built}, metadata=metadata)


def _has_manifest(invocation: Any) -> bool:
    try:
        return bool(invocation.manifest)
    except Exception:  # no manifest.json when dbt failed before parsing
        return False
