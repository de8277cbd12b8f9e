"""The `<project>_plan` job: a SQLMesh plan, reported for a person to read, applied on request.

A run of the job builds a plan for the environment and records, as the step's output
metadata, the added, removed, directly and indirectly modified models, each change's
category (breaking, non-breaking, ...) and the backfill interval count per model and in
total. It applies the plan only when asked (``auto_apply: true`` or ``approved: true``);
a ``protected: true`` project applies only with ``approved: true``, which the deploy sensor
never sets. Example run config (launchpad)::

    ops:
      analytics_plan_op:
        config:
          environment: prod
          approved: true
          environment_plan_id: 7c1e...   # from the dry run's metadata: refuse if prod moved since

The pieces are usable without Dagster::

    with open_context(loaded, project) as context:
        planned = build_plan(context, "prod")
        print(planned.summary.total_intervals)
        apply_plan(context, planned)
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from pydantic import Field

from dagctl_dagster.config import LoadedConfig, ProjectConfig
from dagctl_dagster.frameworks import Deploy
from dagctl_dagster.names import DEPLOY_SCOPE_TAG, PLAN_APPLIED_KEY, PLAN_ENVIRONMENT_KEY
from dagctl_dagster.project import single_op_job
from dagctl_dagster.run_identity import JobKind, job_name, op_name
from dagctl_dagster.secrets import redact

ENVIRONMENT_CHANGED = "environment changed since the plan; plan again"


class EnvironmentChangedError(Exception):
    """Another plan was applied to the environment after this plan was built."""

    def __init__(self, environment: str, planned_against: str | None, current: str | None):
        self.environment = environment
        self.planned_against = planned_against
        self.current = current
        super().__init__(
            f"{ENVIRONMENT_CHANGED} (environment '{environment}': planned against plan "
            f"{planned_against or '<none>'}, now at plan {current or '<none>'})"
        )


class BackfillTooLargeError(Exception):
    """The plan would backfill more intervals than the project allows without a confirmation."""


class PlanConfig(dg.Config):
    """Run config of a `<project>_plan` job."""

    environment: str | None = Field(default=None, description="Target environment; default: the project's.")
    start: str | None = Field(default=None, description="Backfill start (date or SQLMesh relative time).")
    end: str | None = Field(default=None, description="Backfill end.")
    restate_models: list[str] = Field(default_factory=list, description="Models (or tags) to restate.")
    auto_apply: bool = Field(default=False, description="Apply the plan after building it.")
    approved: bool = Field(
        default=False,
        description="A person read the dry run and approves applying it (required for protected projects).",
    )
    allow_large_backfill: bool = Field(
        default=False, description="Apply even when the backfill exceeds the project's max_backfill_intervals."
    )
    environment_plan_id: str | None = Field(
        default=None,
        description="The environment_plan_id a dry run reported; applying fails if the environment moved since.",
    )


@dataclass
class PlanSummary:
    """What a plan changes, in the terms a reviewer needs."""

    environment: str
    environment_plan_id: str | None
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    directly_modified: dict[str, str] = field(default_factory=dict)
    indirectly_modified: dict[str, str] = field(default_factory=dict)
    intervals: dict[str, int] = field(default_factory=dict)
    evaluation_s: float = 0.0

    @property
    def total_intervals(self) -> int:
        return sum(self.intervals.values())

    def metadata(self) -> dict[str, Any]:
        return {
            PLAN_ENVIRONMENT_KEY: self.environment,
            "environment_plan_id": self.environment_plan_id or "",
            "added": dg.MetadataValue.json(self.added),
            "removed": dg.MetadataValue.json(self.removed),
            "directly_modified": dg.MetadataValue.json(self.directly_modified),
            "indirectly_modified": dg.MetadataValue.json(self.indirectly_modified),
            "backfill_intervals": dg.MetadataValue.json(self.intervals),
            "backfill_intervals_total": dg.MetadataValue.int(self.total_intervals),
            "plan_evaluation_s": dg.MetadataValue.float(round(self.evaluation_s, 3)),
            "summary": dg.MetadataValue.md(self.markdown()),
        }

    def markdown(self) -> str:
        lines = [
            f"Plan for environment `{self.environment}`",
            "",
            "| model | change | category | intervals |",
            "|---|---|---|---|",
        ]
        rows = [(name, "added", "", self.intervals.get(name, 0)) for name in self.added]
        rows += [(name, "removed", "", 0) for name in self.removed]
        rows += [(n, "directly modified", c, self.intervals.get(n, 0)) for n, c in self.directly_modified.items()]
        rows += [(n, "indirectly modified", c, self.intervals.get(n, 0)) for n, c in self.indirectly_modified.items()]
        lines += [f"| {name} | {change} | {category} | {count} |" for name, change, category, count in rows]
        lines += ["", f"Backfill: {self.total_intervals} interval(s) in total."]
        return "\n".join(lines)


@dataclass
class BuiltPlan:
    plan: Any  # sqlmesh.core.plan.Plan
    summary: PlanSummary


def build_plan(
    context: Any,
    environment: str,
    *,
    start: str | None = None,
    end: str | None = None,
    restate_models: list[str] | None = None,
) -> BuiltPlan:
    """Build (not apply) a plan of the context's project against ``environment``."""
    started = time.perf_counter()
    plan = context.plan_builder(environment, start=start, end=end, restate_models=restate_models or None).build()
    summary = summarize_plan(plan, environment)
    summary.evaluation_s = time.perf_counter() - started
    return BuiltPlan(plan=plan, summary=summary)


def summarize_plan(plan: Any, environment: str) -> PlanSummary:
    diff = plan.context_diff
    snapshots = plan.snapshots
    indirect = {s_id for downstream in plan.indirectly_modified.values() for s_id in downstream}
    return PlanSummary(
        environment=environment,
        environment_plan_id=plan.previous_plan_id,
        added=sorted(_model_name(snapshots[s_id]) for s_id in diff.added if s_id in snapshots),
        removed=sorted(_model_name(info) for info in diff.removed_snapshots.values()),
        directly_modified=_categories(snapshots[s_id] for s_id in plan.directly_modified if s_id not in diff.added),
        indirectly_modified=_categories(snapshots[s_id] for s_id in indirect),
        intervals={_model_name(snapshots[item.snapshot_id]): len(item.intervals) for item in plan.missing_intervals},
    )


def check_backfill_limit(summary: PlanSummary, limit: int, *, allow_large_backfill: bool) -> None:
    """Raises:
    BackfillTooLargeError: naming the total, the limit and how to go ahead anyway."""
    if summary.total_intervals > limit and not allow_large_backfill:
        largest = sorted(summary.intervals.items(), key=lambda item: -item[1])[:5]
        raise BackfillTooLargeError(
            f"the plan backfills {summary.total_intervals} intervals, more than max_backfill_intervals "
            f"({limit}); largest: {', '.join(f'{n}: {c}' for n, c in largest)}. Narrow it with start/end, "
            "or launch again with allow_large_backfill: true"
        )


def apply_plan(context: Any, built: BuiltPlan) -> float:
    """Apply a built plan; returns the seconds it took.

    Raises:
        EnvironmentChangedError: another plan reached the environment after this one was built.
    """
    from sqlmesh.utils.errors import ConflictingPlanError

    environment = built.summary.environment
    current = _current_plan_id(context, environment)
    if current != built.summary.environment_plan_id:
        raise EnvironmentChangedError(environment, built.summary.environment_plan_id, current)
    started = time.perf_counter()
    try:
        context.apply(built.plan)
    except ConflictingPlanError as exc:
        raise EnvironmentChangedError(
            environment, built.summary.environment_plan_id, _current_plan_id(context, environment)
        ) from exc
    return time.perf_counter() - started


def build_plan_job(loaded: LoadedConfig, project: ProjectConfig) -> dg.JobDefinition:
    """The `<project>_plan` op job of one SQLMesh project."""

    def plan_op(context: dg.OpExecutionContext, config: PlanConfig) -> Iterator[Any]:
        try:
            yield from _run_plan(context, config, loaded, project)
        except Exception as exc:
            from dagctl_dagster.sqlmesh.internals import is_sqlmesh_error

            if not is_sqlmesh_error(exc):
                raise
            # SQLMesh's own reason (a refused plan, a failing unit test) in one line, no traceback.
            reason = redact(" ".join(str(exc).split()))
            raise dg.Failure(description=f"SQLMesh project '{project.name}': {reason}") from None

    return single_op_job(
        JobKind.PLAN, plan_op, loaded, project, "Plans a SQLMesh project against an environment; applies on request."
    )


def deploy_request(project: ProjectConfig, deploy: Deploy) -> dg.RunRequest:
    """Plan and apply the project's environment; a dry run only for a protected project."""
    apply = not project.protected
    return dg.RunRequest(
        job_name=job_name(project, JobKind.PLAN),
        run_key=deploy.run_key(project),
        run_config={
            "ops": {
                op_name(project, JobKind.PLAN): {"config": {"environment": project.environment, "auto_apply": apply}}
            }
        },
        tags={
            **deploy.tags(project),
            DEPLOY_SCOPE_TAG: f"plan {project.environment}"
            + ("" if apply else " (protected: dry run, apply with approved: true)"),
        },
    )


def _run_plan(
    context: dg.OpExecutionContext, config: PlanConfig, loaded: LoadedConfig, project: ProjectConfig
) -> Iterator[Any]:
    from dagctl_dagster.sqlmesh.console import recording_evaluations
    from dagctl_dagster.sqlmesh.context import open_context

    environment = config.environment or project.environment
    apply_requested = config.auto_apply or config.approved
    with open_context(loaded, project) as sqlmesh:
        if config.environment_plan_id is not None:
            current = _current_plan_id(sqlmesh, environment)
            if current != config.environment_plan_id:
                error = EnvironmentChangedError(environment, config.environment_plan_id, current)
                raise dg.Failure(description=str(error), metadata={"environment": environment})
        built = build_plan(
            sqlmesh, environment, start=config.start, end=config.end, restate_models=config.restate_models
        )
        summary = built.summary
        metadata = summary.metadata()
        context.log.info(summary.markdown())
        if not apply_requested:
            yield _dry_run(summary, metadata, "dry run: launch with auto_apply: true to apply")
            return
        if project.protected and not config.approved:
            yield _dry_run(
                summary,
                metadata,
                f"project '{project.name}' is protected: a person must launch this job with approved: true to apply",
            )
            return
        try:
            check_backfill_limit(
                summary, project.max_backfill_intervals, allow_large_backfill=config.allow_large_backfill
            )
        except BackfillTooLargeError as exc:
            raise dg.Failure(description=f"Refused to apply: {exc}", metadata=metadata) from None
        evaluated = EvaluatedIntervals()
        try:
            with recording_evaluations(evaluated.record):
                apply_s = apply_plan(sqlmesh, built)
        except EnvironmentChangedError as exc:
            raise dg.Failure(description=str(exc), metadata=metadata) from None
        metadata.update({PLAN_APPLIED_KEY: True, "apply_s": dg.MetadataValue.float(round(apply_s, 3))})
        context.log.info(
            f"Applied the plan to '{environment}' in {apply_s:.1f}s ({summary.total_intervals} intervals)."
        )
        yield from evaluated.materializations(sqlmesh, project, environment)
        yield dg.Output(_as_value(summary, applied=True), metadata=metadata)


@dataclass
class EvaluatedIntervals:
    """The batches a plan evaluated, per snapshot name, as SQLMesh's console reports them."""

    by_snapshot: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def record(self, snapshot_name: str, interval: tuple[int, int], count: int, audits_failed: int) -> None:
        self.by_snapshot.setdefault(snapshot_name, []).append(interval)
        self.counts[snapshot_name] = self.counts.get(snapshot_name, 0) + count

    def materializations(
        self, context: Any, project: ProjectConfig, environment: str
    ) -> Iterator[dg.AssetMaterialization]:
        """One materialization per model the plan evaluated, so the asset agrees with SQLMesh state."""
        from dagctl_dagster.sqlmesh.translator import DagsterSQLMeshTranslator

        translator = DagsterSQLMeshTranslator(project.name)
        for name, intervals in sorted(self.by_snapshot.items()):
            model = context.models.get(name)
            if model is None or model.kind.is_external or model.kind.is_embedded:
                continue
            yield dg.AssetMaterialization(
                asset_key=translator.get_asset_key(model),
                metadata={
                    "intervals": dg.MetadataValue.int(self.counts[name]),
                    "batches": dg.MetadataValue.int(len(intervals)),
                    "evaluated_by_plan": dg.MetadataValue.bool(True),
                    "sqlmesh/environment": environment,
                },
            )


def _dry_run(summary: PlanSummary, metadata: dict[str, Any], reason: str) -> dg.Output[dict]:
    metadata.update({PLAN_APPLIED_KEY: False, "not_applied_because": reason})
    return dg.Output(_as_value(summary, applied=False), metadata=metadata)


def _as_value(summary: PlanSummary, *, applied: bool) -> dict:
    return {
        "environment": summary.environment,
        "applied": applied,
        "backfill_intervals_total": summary.total_intervals,
        "directly_modified": summary.directly_modified,
    }


def _current_plan_id(context: Any, environment: str) -> str | None:
    from sqlmesh.core.environment import Environment

    current = context.state_sync.get_environment(Environment.sanitize_name(environment))
    if current is None or current.expired:
        return None
    return current.plan_id


def _model_name(snapshot: Any) -> str:
    node = getattr(snapshot, "node", None)
    name = getattr(node, "name", None) or snapshot.name
    return name.replace('"', "")


def _categories(snapshots: Any) -> dict[str, str]:
    return {
        _model_name(snapshot): (snapshot.change_category.name.lower() if snapshot.change_category else "uncategorized")
        for snapshot in sorted(snapshots, key=_model_name)
    }
