"""What a framework plugin hands to `load_definitions` for one project, and the contracts it
fills in: its freshness source and its state probe."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import dagster as dg

from dagctl_dagster.config import LoadedConfig, ProjectConfig
from dagctl_dagster.locations import LocationSelection
from dagctl_dagster.names import FRAMEWORK_TAG, PROJECT_TAG
from dagctl_dagster.run_identity import JobKind, job_name, op_name

__all__ = [
    "CodeLocationContext",
    "FreshnessSource",
    "ModelSchedule",
    "ProjectDefinitions",
    "StateSize",
    "single_op_job",
]


@dataclass(frozen=True)
class ModelSchedule:
    """What a model's SLA is judged on: its cron, and when its last completed interval ended."""

    key: dg.AssetKey
    cron: str
    timezone: str
    last_end: datetime | None
    grace_minutes: int | None = None  # a model's own grace; else the project's


class FreshnessSource(Protocol):
    """How a framework tells when each model of a project last completed an interval."""

    @property
    def check_keys(self) -> list[dg.AssetKey]:
        """The models that have a freshness SLA."""
        ...

    @property
    def locked_by_runs(self) -> bool:
        """Reading the schedules would wait for (or break) a running run of the project
        (SQLMesh state on DuckDB allows one process): the sensor then waits for the next tick."""
        ...

    def schedules(self, instance: dg.DagsterInstance) -> list[ModelSchedule]: ...

    @property
    def run_resource_keys(self) -> frozenset[str]:
        """The run resources :meth:`schedules_in_run` asks (the framework's run session)."""
        ...

    def schedules_in_run(self, resources: Any, instance: dg.DagsterInstance) -> list[ModelSchedule]:
        """The schedules, read inside a run that executes the ``dagctl_freshness`` checks
        (after the run's own model steps): through the run's framework session when it has
        one open, never through a second connection beside it."""
        ...


@dataclass(frozen=True)
class StateSize:
    """The size of a project's framework state database (SQLMesh state)."""

    backend: str
    size_bytes: int
    database_bytes: int | None = None
    location: str = ""


@dataclass
class ProjectDefinitions:
    """The Dagster objects one SQLMesh or dbt project contributes.

    ``model_keys`` are the keys of the assets a `<project>_run` job selects (the models,
    not external sources). ``jobs`` and ``schedules`` are the project's own maintenance and
    deploy jobs; ``deploy_job`` (one of ``jobs``) is what the deploy sensor launches.
    """

    project: ProjectConfig
    project_dir: Path
    assets: list[dg.AssetsDefinition | dg.AssetSpec] = field(default_factory=list)
    model_keys: list[dg.AssetKey] = field(default_factory=list)
    # Check steps a run also executes besides the models' own checks (external models'
    # audits, standalone audits).
    extra_checked_keys: list[dg.AssetKey] = field(default_factory=list)
    resources: dict[str, object] = field(default_factory=dict)
    jobs: list[dg.JobDefinition] = field(default_factory=list)
    schedules: list[dg.ScheduleDefinition] = field(default_factory=list)
    deploy_job: dg.JobDefinition | None = None
    freshness: FreshnessSource | None = None
    # Measures the framework's state database, for its observability asset; None: no state.
    state_probe: Callable[[], StateSize] | None = None

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
    # Which of the config's projects this location serves (the deploy sensor re-reads the file).
    selection: LocationSelection = field(default_factory=LocationSelection)


def single_op_job(
    kind: JobKind,
    op_fn: Callable[..., object],
    loaded: LoadedConfig,
    project: ProjectConfig,
    description: str,
    **op_kwargs: object,
) -> dg.JobDefinition:
    """A one-op maintenance job (plan, deploy, janitor, backup) of a project.

    The job is ``<project>_<kind>`` and its op ``<project>_<kind>_op`` (:mod:`run_identity`):
    op names are unique in a repository, so every project's op carries the project. Its runs
    carry the commit the code was loaded from, as run jobs do (:mod:`dagctl_dagster.k8s.revision`).
    These jobs run in process: one op gains nothing from the claim-aware executor.
    """
    from dagctl_dagster.k8s.revision import code_revision_tags

    op = dg.op(name=op_name(project, kind), tags={PROJECT_TAG: project.name}, **op_kwargs)(op_fn)  # type: ignore[call-overload]

    @dg.job(
        name=job_name(project, kind),
        description=f"{description} (project '{project.name}')",
        tags={PROJECT_TAG: project.name, FRAMEWORK_TAG: project.framework, **code_revision_tags(loaded.root)},
        executor_def=dg.in_process_executor,
    )
    def _job():
        op()

    return _job
