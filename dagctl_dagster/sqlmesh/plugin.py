"""SQLMesh as a framework plugin (:class:`~dagctl_dagster.frameworks.FrameworkPlugin`).

A SQLMesh project contributes one asset per model (audits as checks), its run session,
``<project>_plan`` (what the deploy sensor launches), ``<project>_janitor`` and
``<project>_state_backup`` with their schedules, a freshness source reading SQLMesh state,
and a probe of its state database's size.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, ClassVar

from dagctl_dagster.frameworks import Deploy, FrameworkPlugin
from dagctl_dagster.sqlmesh import FRAMEWORK

if TYPE_CHECKING:
    import dagster as dg

    from dagctl_dagster.config import LoadedConfig, ProjectConfig
    from dagctl_dagster.project import ProjectDefinitions


class SQLMeshPlugin(FrameworkPlugin):
    name: ClassVar[str] = FRAMEWORK
    build_order: ClassVar[int] = 0
    default_schedule: ClassVar[str | None] = "*/15 * * * *"

    def check_config(self, project: ProjectConfig) -> None:
        if project.target is not None:
            raise ValueError("`target` is a dbt setting; SQLMesh projects choose a `gateway`")

    def build_project(
        self, loaded: LoadedConfig, project: ProjectConfig, upstream_keys: Sequence[dg.AssetKey]
    ) -> ProjectDefinitions:
        from dagctl_dagster.sqlmesh.asset_factory import build_sqlmesh_project
        from dagctl_dagster.sqlmesh.freshness import SQLMeshFreshness
        from dagctl_dagster.sqlmesh.maintenance import (
            build_janitor_job,
            build_maintenance_schedules,
            build_state_backup_job,
        )
        from dagctl_dagster.sqlmesh.plan import build_plan_job
        from dagctl_dagster.sqlmesh.state_size import measure_state_size

        project_defs = build_sqlmesh_project(loaded, project)
        plan_job = build_plan_job(loaded, project)
        project_defs.deploy_job = plan_job
        project_defs.jobs = [plan_job, build_janitor_job(loaded, project), build_state_backup_job(loaded, project)]
        project_defs.schedules = build_maintenance_schedules(loaded.config, project)
        project_defs.freshness = SQLMeshFreshness(loaded, project, tuple(project_defs.model_keys))
        project_defs.state_probe = partial(measure_state_size, project_defs.project_dir, project)
        return project_defs

    def model_keys(self, loaded: LoadedConfig, project: ProjectConfig) -> list[dg.AssetKey]:
        from dagctl_dagster.sqlmesh.asset_factory import sqlmesh_model_keys

        return sqlmesh_model_keys(loaded, project)

    def deploy_request(self, project: ProjectConfig, deploy: Deploy) -> dg.RunRequest:
        from dagctl_dagster.sqlmesh.plan import deploy_request

        return deploy_request(project, deploy)

    inseparable_reason: ClassVar[str] = "repositories of one SQLMesh multi-repository layout load into one Context"

    def check_projects(self, loaded: LoadedConfig) -> None:
        from dagctl_dagster.sqlmesh.shared_state import refuse_shared_environments

        refuse_shared_environments(loaded)

    def inseparable(self, loaded: LoadedConfig) -> list[frozenset[str]]:
        from dagctl_dagster.sqlmesh.context import multi_repository_group

        group = multi_repository_group(loaded)
        return [group] if len(group) > 1 else []

    def model_key(self, project: ProjectConfig, model: str) -> str:
        from dagctl_dagster.sqlmesh.translator import model_name_key

        return model_name_key(project, model)
