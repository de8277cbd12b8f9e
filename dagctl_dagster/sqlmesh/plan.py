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
        apply_plan(context, planned.prepared)
"""

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import dagster as dg
from pydantic import Field

from dagctl_dagster.config import LoadedConfig, ProjectConfig
from dagctl_dagster.frameworks import Deploy
from dagctl_dagster.names import DEPLOY_SCOPE_TAG, PLAN_APPLIED_KEY, PLAN_ENVIRONMENT_KEY, SQLMESH_DURATION_KEY
from dagctl_dagster.project import single_op_job
from dagctl_dagster.run_identity import JobKind, job_name, op_name
from dagctl_dagster.secrets import redact
from dagctl_dagster.sqlmesh import internals

# Re-exported: applying a plan is the seam's (one apply_plan, for this job and a run's first plan).
from dagctl_dagster.sqlmesh.internals import ENVIRONMENT_CHANGED as ENVIRONMENT_CHANGED
from dagctl_dagster.sqlmesh.internals import EnvironmentChangedError as EnvironmentChangedError
from dagctl_dagster.sqlmesh.internals import apply_plan as apply_plan

PAUSE_NOT_HELD = (
    "Evaluated despite a pause (the plan changes their upstream, so SQLMesh must build their new "
    "version to promote it; it cannot keep them as deployed)"
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
    held_out: list[str] = field(default_factory=list)  # paused models and their downstream
    # Paused models (and downstream) the plan evaluates anyway: it changes their upstream.
    pauses_not_held: list[str] = field(default_factory=list)

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
            "held_out_paused": dg.MetadataValue.json(self.held_out),
            "evaluated_despite_pause": dg.MetadataValue.json(self.pauses_not_held),
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
        if self.held_out:
            lines += [
                "",
                f"Left out, as the environment has them (paused, or downstream of a paused model): "
                f"{', '.join(self.held_out)}. The first plan after `dagctl-dagster models resume` includes them.",
            ]
        if self.pauses_not_held:
            lines += ["", f"{PAUSE_NOT_HELD}: {', '.join(self.pauses_not_held)}."]
        return "\n".join(lines)


@dataclass
class BuiltPlan:
    prepared: internals.PreparedPlan  # what apply_plan applies
    summary: PlanSummary


def build_plan(
    context: Any,
    environment: str,
    *,
    start: str | None = None,
    end: str | None = None,
    restate_models: list[str] | None = None,
    held_out: list[str] | None = None,
) -> BuiltPlan:
    """Build (not apply) a plan of the context's project against ``environment``; models in
    ``held_out`` (FQNs, with their downstream) stay as the environment has them."""
    started = time.perf_counter()
    held = [_name(fqn) for fqn in held_out or ()]
    prepared = internals.prepare_plan(
        context, environment, start=start, end=end, restate_models=restate_models, held_out=held_out or ()
    )
    summary = summarize_plan(prepared)
    # A model whose upstream the plan changes gets a new version SQLMesh must build: it cannot
    # stay as deployed (`sqlmesh plan --select-model '^(m+)'` fails promoting it). Then the
    # plan is the whole one, and says which paused models it evaluates despite their pause.
    changed = {_name(name) for name in [*summary.added, *summary.directly_modified, *summary.indirectly_modified]}
    not_held = sorted(name for name in held if name in changed)
    if not_held:
        prepared = internals.prepare_plan(context, environment, start=start, end=end, restate_models=restate_models)
        summary = summarize_plan(prepared)
        summary.pauses_not_held = held
    else:
        summary.held_out = held
    summary.evaluation_s = time.perf_counter() - started
    return BuiltPlan(prepared=prepared, summary=summary)


def summarize_plan(prepared: internals.PreparedPlan) -> PlanSummary:
    changes = internals.plan_changes(prepared)
    return PlanSummary(
        environment=prepared.environment,
        environment_plan_id=prepared.planned_against,
        added=changes.added,
        removed=changes.removed,
        directly_modified=changes.directly_modified,
        indirectly_modified=changes.indirectly_modified,
        intervals=changes.intervals,
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


def build_plan_job(loaded: LoadedConfig, project: ProjectConfig) -> dg.JobDefinition:
    """The `<project>_plan` op job of one SQLMesh project."""

    def plan_op(context: dg.OpExecutionContext, config: PlanConfig) -> Iterator[Any]:
        try:
            yield from _run_plan(context, config, loaded, project)
        except Exception as exc:
            if not internals.is_sqlmesh_error(exc):
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
    from dagctl_dagster.sqlmesh.context import open_context

    environment = config.environment or project.environment
    apply_requested = config.auto_apply or config.approved
    with open_context(loaded, project) as sqlmesh:
        if config.environment_plan_id is not None:
            current = internals.environment_state(sqlmesh, environment).current_plan_id
            if current != config.environment_plan_id:
                error = EnvironmentChangedError(environment, config.environment_plan_id, current)
                raise dg.Failure(description=str(error), metadata={"environment": environment})
        built = build_plan(
            sqlmesh,
            environment,
            start=config.start,
            end=config.end,
            restate_models=config.restate_models,
            held_out=_held_out(sqlmesh, context.instance, project),
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
        failed: dict[str, str] = {}
        try:
            apply_s = apply_plan(
                sqlmesh, built.prepared, evaluations=evaluated.record, failures=lambda m, e: failed.update({m: e})
            )
        except EnvironmentChangedError as exc:
            raise dg.Failure(description=str(exc), metadata=metadata) from None
        except Exception as exc:
            if not failed:
                raise
            raise dg.Failure(description=_failed_on(project, environment, failed), metadata=metadata) from exc
        metadata.update({PLAN_APPLIED_KEY: True, "apply_s": dg.MetadataValue.float(round(apply_s, 3))})
        context.log.info(
            f"Applied the plan to '{environment}' in {apply_s:.1f}s ({summary.total_intervals} intervals)."
        )
        yield from evaluated.materializations(sqlmesh, project, environment, despite_pause=summary.pauses_not_held)
        yield dg.Output(_as_value(summary, applied=True), metadata=metadata)


def _held_out(sqlmesh: Any, instance: dg.DagsterInstance, project: ProjectConfig) -> list[str]:
    """The project's paused models (read from the deployment's pause store) and their downstream."""
    from dagctl_dagster.execution.pauses import pauses_of_project
    from dagctl_dagster.sqlmesh.translator import model_asset_key

    paused = pauses_of_project(instance, project.name)
    if not paused:
        return []
    fqns = [fqn for fqn in sqlmesh.models if model_asset_key(fqn).to_user_string() in paused]
    return internals.downstream_of(sqlmesh, fqns) if fqns else []


def _name(fqn: str) -> str:
    """A model as users name it (``schema.table``)."""
    from dagctl_dagster.sqlmesh.translator import schema_and_table

    return ".".join(schema_and_table(fqn))


def _failed_on(project: ProjectConfig, environment: str, failed: dict[str, str]) -> str:
    models = "; ".join(f"{_name(fqn)}: {redact(error)}" for fqn, error in sorted(failed.items()))
    return (
        f"SQLMesh project '{project.name}': the plan of environment '{environment}' failed on {models}. "
        "SQLMesh promoted nothing; the tables it built are kept for the next plan."
    )


@dataclass
class EvaluatedIntervals:
    """The batches a plan evaluated, per snapshot name, as SQLMesh's console reports them."""

    by_snapshot: dict[str, list[internals.PlanBatch]] = field(default_factory=dict)

    def record(self, batch: internals.PlanBatch) -> None:
        self.by_snapshot.setdefault(batch.snapshot_name, []).append(batch)

    def materializations(
        self, context: Any, project: ProjectConfig, environment: str, despite_pause: list[str] | None = None
    ) -> Iterator[dg.AssetMaterialization]:
        """One materialization per model the plan evaluated, so the asset agrees with SQLMesh state."""
        from dagctl_dagster.sqlmesh.translator import DagsterSQLMeshTranslator

        translator = DagsterSQLMeshTranslator(project.name)
        for name, batches in sorted(self.by_snapshot.items()):
            model = context.models.get(name)
            if model is None or internals.is_external(model) or internals.is_embedded(model):
                continue
            metadata: dict[str, Any] = {
                SQLMESH_DURATION_KEY: dg.MetadataValue.float(round(sum(b.duration_s for b in batches), 4)),
                "intervals": dg.MetadataValue.int(sum(b.interval_count for b in batches)),
                "batches": dg.MetadataValue.int(len(batches)),
                "evaluated_by_plan": dg.MetadataValue.bool(True),
                "sqlmesh/environment": environment,
            }
            rows = [b.rows_processed for b in batches if b.rows_processed is not None]
            if rows:
                metadata["rows_processed"] = dg.MetadataValue.int(sum(rows))
            if _name(name) in (despite_pause or []):
                metadata["evaluated_despite_pause"] = PAUSE_NOT_HELD
            yield dg.AssetMaterialization(asset_key=translator.get_asset_key(model), metadata=metadata)


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
