"""dbt as a framework plugin (:class:`~dagctl_dagster.frameworks.FrameworkPlugin`).

A dbt project contributes its models, seeds and snapshots as assets (tests as checks) on
dagster-dbt, its ``DbtCliResource``, ``<project>_deploy`` (what the deploy sensor launches,
``dbt build --select`` of what the git diff changed) and a freshness source from each
model's ``meta.dagctl.freshness`` or the project's schedule. It is built after SQLMesh
projects, so a source that is a SQLMesh model becomes an edge to that model's asset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from dagctl_dagster.dbt import FRAMEWORK
from dagctl_dagster.frameworks import Deploy, FrameworkPlugin, UpstreamModels

if TYPE_CHECKING:
    import dagster as dg

    from dagctl_dagster.config import LoadedConfig, ProjectConfig
    from dagctl_dagster.extras import Need
    from dagctl_dagster.project import ProjectDefinitions


class DbtPlugin(FrameworkPlugin):
    name: ClassVar[str] = FRAMEWORK
    build_order: ClassVar[int] = 1
    default_schedule: ClassVar[str | None] = None

    def check_config(self, project: ProjectConfig) -> None:
        if project.gateway is not None:
            raise ValueError("`gateway` is a SQLMesh setting; dbt projects choose a `target`")

    def build_project(
        self, loaded: LoadedConfig, project: ProjectConfig, upstream: UpstreamModels
    ) -> ProjectDefinitions:
        from dagctl_dagster.dbt.asset_factory import build_dbt_project
        from dagctl_dagster.dbt.deploy import build_dbt_deploy_job

        project_defs = build_dbt_project(loaded, project, upstream)
        deploy_job = build_dbt_deploy_job(loaded, project)
        project_defs.deploy_job = deploy_job
        project_defs.jobs = [deploy_job]
        return project_defs

    def needs(self, loaded: LoadedConfig, project: ProjectConfig, index: int) -> list[Need]:
        from dagctl_dagster.extras import dbt_needs

        return dbt_needs(loaded, project, index)

    def deploy_request(self, project: ProjectConfig, deploy: Deploy) -> dg.RunRequest | None:
        from dagctl_dagster.dbt.deploy import deploy_request

        return deploy_request(project, deploy)

    def model_key(self, project: ProjectConfig, model: str) -> str:
        return f"{project.name}/{model}"
