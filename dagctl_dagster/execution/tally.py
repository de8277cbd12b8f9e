"""What became of each step of a run, counted for the run's summary.

The executor records each step's outcome here as it settles; at the end of the run the
tally is one :class:`~dagctl_dagster.names.ExecutorSummary` (the ``dagctl run summary``
engine event, which the alert side reads back).

Example::

    tally = Tally()
    tally.executed.add("shop__orders")
    tally.not_run_step("shop__items", NotRunReason.CLAIM_LOST)
    tally.summary(duration_s=12.5).executed   # 1
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dagctl_dagster.cost import QueryCost
from dagctl_dagster.names import ExecutorSummary, NotRunReason


@dataclass
class Tally:
    """Step keys by outcome (models, for ``left_out_models``)."""

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
    # The warehouse cost the run's materializations report (None: none reported one).
    cost: QueryCost | None = None

    def not_run_step(self, step_key: str, reason: NotRunReason) -> None:
        self.not_run.setdefault(reason, set()).add(step_key)

    def materialized(self, metadata: Mapping[str, Any]) -> None:
        """Adds what a materialization says its model cost the warehouse."""
        cost = QueryCost.from_metadata(metadata)
        if cost is not None:
            self.cost = cost if self.cost is None else self.cost + cost

    def summary(self, duration_s: float) -> ExecutorSummary:
        return ExecutorSummary(
            duration_s=round(duration_s, 3),
            executed=len(self.executed),
            failed=len(self.failed),
            blocked=len(self.blocked),
            skipped_claimed_elsewhere=len(self.claimed_elsewhere),
            skipped_environment_changed=len(self.environment_changed),
            skipped_downstream=len(self.skipped_downstream),
            skipped_paused=len(self.paused),
            models_left_out=len(self.left_out_models),
            not_run=sum(len(steps) for steps in self.not_run.values()),
            **self._not_run_counts(),
            warehouse_queries=self.cost.queries if self.cost is not None else None,
            warehouse_query_s=round(self.cost.query_time_s, 6) if self.cost is not None else None,
        )

    def _not_run_counts(self) -> dict[str, int]:
        """``not_run_<reason>`` for every reason, so each summary field is always written."""
        return {f"not_run_{reason.value}": len(self.not_run.get(reason, ())) for reason in NotRunReason}
