"""What became of each step of a run, counted per model for the run's summary.

The executor records each step's outcome here as it settles, and each model a step
materialized as its materialization event passes; at the end of the run the tally is one
:class:`~dagctl_dagster.names.ExecutorSummary` (the ``dagctl run summary`` engine event,
which the alert side reads back), and one per project when the run spans several.

Counts are models, not steps: a step that succeeded counts the models it materialized as
``executed`` and the others as ``nothing_due`` (a model step with nothing due), or, in a
multi-model step (a dbt build) that left models out, as ``skipped_downstream`` (downstream of
the ones left out, which count in ``models_left_out``). A failed multi-model step counts the
models its failure names (``failed_models`` / ``skipped_models``). A step with no model (an
audit or check step) counts only when it fails or does not run, as one.

Example::

    tally = Tally(models_by_step={"shop__orders": ["shop/orders"]}, project_of_step={"shop__orders": "shop"})
    tally.executed.add("shop__orders")
    tally.materialized("shop__orders", "shop/orders")
    tally.summary(duration_s=12.5).executed   # 1
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dagctl_dagster.cost import QueryCost
from dagctl_dagster.names import ExecutorSummary, NotRunReason


@dataclass
class Tally:
    """Step keys by outcome (models, for ``left_out_models``), and what each step materialized."""

    models_by_step: Mapping[str, list[str]] = field(default_factory=dict)
    project_of_step: Mapping[str, str] = field(default_factory=dict)
    executed: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    blocked: set[str] = field(default_factory=set)
    claimed_elsewhere: set[str] = field(default_factory=set)
    environment_changed: set[str] = field(default_factory=set)
    skipped_downstream: set[str] = field(default_factory=set)
    paused: set[str] = field(default_factory=set)
    # Models left out of a multi-model step (a dbt build): claimed elsewhere or paused.
    left_out_models: set[str] = field(default_factory=set)
    # Steps that did not run their models, by reason: the run is not green.
    not_run: dict[NotRunReason, set[str]] = field(default_factory=dict)
    # Models each step materialized (its materialization events).
    materialized_by_step: dict[str, set[str]] = field(default_factory=dict)
    # A failed multi-model step's own account: the models that failed and those it skipped.
    failed_models_by_step: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)
    # What each step's materializations say their models cost the warehouse.
    cost_by_step: dict[str, QueryCost] = field(default_factory=dict)

    def not_run_step(self, step_key: str, reason: NotRunReason) -> None:
        self.not_run.setdefault(reason, set()).add(step_key)

    def materialized(self, step_key: str, model: str, metadata: Mapping[str, Any]) -> None:
        """A step materialized ``model``; adds what it says the model cost the warehouse."""
        self.materialized_by_step.setdefault(step_key, set()).add(model)
        cost = QueryCost.from_metadata(metadata)
        if cost is not None:
            known = self.cost_by_step.get(step_key)
            self.cost_by_step[step_key] = cost if known is None else known + cost

    def failed_step(self, step_key: str, failed_models: list[str], skipped_models: list[str]) -> None:
        """A failed step whose failure names its failed (and skipped) models."""
        self.failed_models_by_step[step_key] = (failed_models, skipped_models)

    def projects(self) -> list[str]:
        """The projects of the run's steps (steps without one, e.g. a user's own asset, aside)."""
        return sorted({p for p in self.project_of_step.values() if p})

    def summary(self, duration_s: float, project: str | None = None) -> ExecutorSummary:
        """The run's counts, or only those of ``project``'s steps."""
        steps = _Steps(self, project)
        executed, nothing_due, downstream_of_left_out = steps.succeeded()
        failed, executed_in_failed, blocked_in_failed = steps.failed()
        cost = steps.cost()
        return ExecutorSummary(
            duration_s=round(duration_s, 3),
            executed=executed + executed_in_failed,
            failed=failed,
            blocked=steps.models(self.blocked) + blocked_in_failed,
            skipped_claimed_elsewhere=steps.models(self.claimed_elsewhere),
            skipped_environment_changed=steps.models(self.environment_changed),
            skipped_downstream=steps.models(self.skipped_downstream) + downstream_of_left_out,
            skipped_paused=steps.models(self.paused),
            models_left_out=len({m for m in self.left_out_models if steps.has_model(m)}),
            not_run=sum(steps.models(keys, at_least_one=True) for keys in self.not_run.values()),
            nothing_due=nothing_due,
            warehouse_queries=cost.queries if cost is not None else None,
            warehouse_query_s=round(cost.query_time_s, 6) if cost is not None else None,
            **{
                f"not_run_{reason.value}": steps.models(self.not_run.get(reason, ()), at_least_one=True)
                for reason in NotRunReason
            },
        )


class _Steps:
    """One summary's view of the tally: the steps it counts and their models."""

    def __init__(self, tally: Tally, project: str | None) -> None:
        self.tally = tally
        self.project = project
        self._models = {m for step, models in tally.models_by_step.items() if self.counts(step) for m in models}

    def counts(self, step_key: str) -> bool:
        return self.project is None or self.tally.project_of_step.get(step_key) == self.project

    def has_model(self, model: str) -> bool:
        return self.project is None or model in self._models

    def models_of(self, step_key: str) -> list[str]:
        return list(self.tally.models_by_step.get(step_key, []))

    def models(self, step_keys: Iterable[str], *, at_least_one: bool = False) -> int:
        """How many models the steps hold; a step with none counts as one when ``at_least_one``."""
        floor = 1 if at_least_one else 0
        return sum(max(len(self.models_of(key)), floor) for key in step_keys if self.counts(key))

    def succeeded(self) -> tuple[int, int, int]:
        """Models executed, with nothing due, and left out as downstream of a left-out model."""
        executed = nothing_due = downstream = 0
        for key in self.tally.executed:
            if not self.counts(key):
                continue
            models = self.models_of(key)
            done = self.tally.materialized_by_step.get(key, set()) & set(models)
            left_out = self.tally.left_out_models & set(models)
            rest = len(set(models) - done - left_out)
            executed += len(done)
            if left_out:
                downstream += rest
            else:
                nothing_due += rest
        return executed, nothing_due, downstream

    def failed(self) -> tuple[int, int, int]:
        """Models failed, executed before the failure, and skipped by it (multi-model steps)."""
        failed = executed = blocked = 0
        for key in self.tally.failed:
            if not self.counts(key):
                continue
            models = set(self.models_of(key))
            done = self.tally.materialized_by_step.get(key, set()) & models
            executed += len(done)
            named = self.tally.failed_models_by_step.get(key)
            if named is not None:
                failed += max(len(named[0]), 1)
                blocked += len(named[1])
            else:
                failed += max(len(models - done), 1)
        return failed, executed, blocked

    def cost(self) -> QueryCost | None:
        """What the counted steps' materializations cost the warehouse (None: none counted)."""
        costs = [cost for key, cost in self.tally.cost_by_step.items() if self.counts(key)]
        total: QueryCost | None = None
        for cost in costs:
            total = cost if total is None else total + cost
        return total
