"""SQLMesh plans: unit tests, building a plan, what it changes, and the one way to apply it."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dagctl_dagster.sqlmesh.internals.environments import environment_state
from dagctl_dagster.sqlmesh.internals.recording import EvaluationRecorder, FailureRecorder, recording_evaluations

if TYPE_CHECKING:
    from unittest import TestCase

    from sqlmesh import Context
    from sqlmesh.core.plan import Plan
    from sqlmesh.core.snapshot import Snapshot, SnapshotTableInfo

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


# -- unit tests ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FailedTest:
    name: str
    reason: str


def run_unit_tests(context: Context) -> list[FailedTest]:
    """The project's SQLMesh unit tests, run as ``sqlmesh plan`` runs them; the failures."""
    result = context.test(stream=io.StringIO())
    failed: list[FailedTest] = []
    for test, trace in [*result.failures, *result.errors]:
        reason = (str(trace).strip().splitlines() or [""])[-1]
        failed.append(FailedTest(name=_test_name(test), reason=reason))
    return failed


def _test_name(test: TestCase) -> str:
    path = getattr(test, "path", None)
    name = getattr(test, "test_name", None) or str(test)
    return f"{name} ({Path(path).name})" if path else name


# -- building and applying -----------------------------------------------------------------


@dataclass(frozen=True)
class PreparedPlan:
    """A built, not yet applied, SQLMesh plan and the plan its environment was at then."""

    environment: str
    planned_against: str | None
    plan: Plan


def prepare_plan(
    context: Context,
    environment: str,
    *,
    start: str | None = None,
    end: str | None = None,
    restate_models: Sequence[str] | None = None,
    skip_tests: bool | None = None,
    held_out: Sequence[str] = (),
    skip_backfill: bool = False,
) -> PreparedPlan:
    """The plan ``sqlmesh plan <environment>`` would build (without its prompts).

    ``held_out`` (model FQNs) and their downstream stay as the environment has them (absent
    from a new one), as ``sqlmesh plan --select-model '^(m+)'`` leaves them. With
    ``skip_backfill`` the plan evaluates nothing (``--skip-backfill --no-gaps``): it creates
    the tables of what it adds, and records no interval, so that the next run evaluates them.
    """
    plan = context.plan_builder(
        environment,
        start=start,
        end=end,
        restate_models=restate_models or None,
        skip_tests=skip_tests,
        select_models=[held_out_selection(held_out)] if held_out else None,
        skip_backfill=skip_backfill or None,
        no_gaps=True if skip_backfill else None,
    ).build()
    return PreparedPlan(environment=environment, planned_against=plan.previous_plan_id, plan=plan)


def held_out_selection(models: Sequence[str]) -> str:
    """SQLMesh's model selection of everything but ``models`` and their downstream."""
    return "^(" + " | ".join(f"{model}+" for model in sorted(models)) + ")"


def downstream_of(context: Context, models: Iterable[str]) -> list[str]:
    """``models`` (FQNs) and every model that reads them, directly or not, sorted."""
    readers: dict[str, set[str]] = {}
    for fqn, model in context.models.items():
        for upstream in model.depends_on or ():
            readers.setdefault(upstream, set()).add(fqn)
    found = set(models)
    stack = list(found)
    while stack:
        for reader in readers.get(stack.pop(), ()):
            if reader not in found:
                found.add(reader)
                stack.append(reader)
    return sorted(found)


def apply_plan(
    context: Context,
    prepared: PreparedPlan,
    *,
    circuit_breaker: Callable[[], bool] | None = None,
    evaluations: EvaluationRecorder | None = None,
    failures: FailureRecorder | None = None,
) -> float:
    """Applies a prepared plan, as ``sqlmesh plan --auto-apply`` does; returns the seconds it took.

    ``evaluations`` hears of each batch the plan evaluates, ``failures`` of each model that
    failed; ``circuit_breaker`` stops the apply between batches when it returns True.

    Raises:
        EnvironmentChangedError: another plan reached the environment after this one was built.
    """
    from sqlmesh.utils.errors import ConflictingPlanError

    environment = prepared.environment
    current = environment_state(context, environment).current_plan_id
    if current != prepared.planned_against:
        raise EnvironmentChangedError(environment, prepared.planned_against, current)
    started = time.perf_counter()
    try:
        with recording_evaluations(evaluations, failures):
            context.apply(prepared.plan, circuit_breaker=circuit_breaker)
    except ConflictingPlanError as exc:
        now = environment_state(context, environment).current_plan_id
        raise EnvironmentChangedError(environment, prepared.planned_against, now) from exc
    return time.perf_counter() - started


# -- what a plan changes -------------------------------------------------------------------


@dataclass(frozen=True)
class PlanChanges:
    """What a plan changes, by model name: added, removed, modified (with each change's
    category: breaking, non_breaking, ...) and the intervals it backfills per model."""

    added: list[str]
    removed: list[str]
    directly_modified: dict[str, str]
    indirectly_modified: dict[str, str]
    intervals: dict[str, int]


def plan_changes(prepared: PreparedPlan) -> PlanChanges:
    plan = prepared.plan
    diff = plan.context_diff
    snapshots = plan.snapshots
    indirect = {s_id for downstream in plan.indirectly_modified.values() for s_id in downstream}
    return PlanChanges(
        added=sorted(_model_name(snapshots[s_id]) for s_id in diff.added if s_id in snapshots),
        removed=sorted(_model_name(info) for info in diff.removed_snapshots.values()),
        directly_modified=_categories(snapshots[s_id] for s_id in plan.directly_modified if s_id not in diff.added),
        indirectly_modified=_categories(snapshots[s_id] for s_id in indirect),
        intervals={_model_name(snapshots[item.snapshot_id]): len(item.intervals) for item in plan.missing_intervals},
    )


def _model_name(snapshot: Snapshot | SnapshotTableInfo) -> str:
    node = getattr(snapshot, "node", None)
    name = getattr(node, "name", None) or snapshot.name
    return name.replace('"', "")


def _categories(snapshots: Iterable[Snapshot]) -> dict[str, str]:
    return {
        _model_name(snapshot): (snapshot.change_category.name.lower() if snapshot.change_category else "uncategorized")
        for snapshot in sorted(snapshots, key=_model_name)
    }
