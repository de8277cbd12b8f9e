"""What each framework factory hands to `load_definitions` for one project."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from dagctl_dagster.config import LoadedConfig, ProjectConfig
from dagctl_dagster.names import FRAMEWORK_TAG, PROJECT_TAG

__all__ = ["CodeLocationContext", "ProjectDefinitions", "single_op_job"]


@dataclass
class ProjectDefinitions:
    """The Dagster objects one SQLMesh or dbt project contributes.

    ``model_keys`` are the keys of the assets a `<project>_run` job selects (the models,
    not external sources); ``run_job`` selects exactly them.
    """

    project: ProjectConfig
    project_dir: Path
    assets: list[dg.AssetsDefinition | dg.AssetSpec] = field(default_factory=list)
    model_keys: list[dg.AssetKey] = field(default_factory=list)
    # Check steps a run also executes besides the models' own checks (external models'
    # audits, standalone audits).
    extra_checked_keys: list[dg.AssetKey] = field(default_factory=list)
    resources: dict[str, object] = field(default_factory=dict)
    # dbt: models' own freshness SLA from `meta: {dagctl: {freshness: ...}}`: (cron, grace minutes).
    freshness: dict[dg.AssetKey, tuple[str, int | None]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.project.name

    @property
    def models_by_op(self) -> dict[str, str]:
        """Op name → model asset key (``a/b``) of the project's single-model ops (SQLMesh models)."""
        return {
            asset.op.name: next(iter(asset.keys)).to_user_string()
            for asset in self.assets
            if isinstance(asset, dg.AssetsDefinition) and asset.is_executable and len(asset.keys) == 1
        }

    @property
    def run_selection(self) -> dg.AssetSelection:
        """What `<project>_run` executes: every model, its checks and the extra check steps."""
        selection: dg.AssetSelection = dg.AssetSelection.assets(*self.model_keys)
        if self.extra_checked_keys:
            selection = selection | dg.AssetSelection.checks_for_assets(*self.extra_checked_keys)
        return selection


@dataclass
class CodeLocationContext:
    """Everything built so far, for the automation and alert builders."""

    loaded: LoadedConfig
    projects: list[ProjectDefinitions]


def single_op_job(name: str, op: dg.OpDefinition, project: ProjectConfig, description: str) -> dg.JobDefinition:
    """A one-op maintenance job (plan, deploy, janitor, backup) tagged with its project.

    These jobs run in process: one op gains nothing from the claim-aware executor.
    """

    @dg.job(
        name=name,
        description=description,
        tags={PROJECT_TAG: project.name, FRAMEWORK_TAG: project.framework},
        executor_def=dg.in_process_executor,
    )
    def _job():
        op()

    return _job
