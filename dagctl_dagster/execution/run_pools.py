"""The run's warehouse pools (:mod:`dagctl_dagster.pools`): the limits `.dagctl/config.yaml`
gives them, set in Dagster before any step of the run claims a slot.

Dagster's own pool machinery (``ActiveExecution`` with the instance's concurrency context)
hands the executor a pool's step only once it holds a slot, says which pool a waiting step
waits for, and frees the slot when the step ends; a step this run settles without running
frees its slot at once (:meth:`PlanRun.mark_skipped`).
"""

from __future__ import annotations

from collections.abc import Iterator

from dagctl_dagster.execution import dagster_adapter as adapter
from dagctl_dagster.names import POOL_LIMIT_TAG


def apply_pool_limits(plan: adapter.PlanRun) -> Iterator[adapter.DagsterEvent]:
    """Sets each pool's limit from the config where it differs, naming the change."""
    for pool, steps in sorted(plan.pools().items()):
        configured = {int(t) for step in steps if (t := adapter.step_tags(step).get(POOL_LIMIT_TAG))}
        current = adapter.pool_limit(plan.instance, pool)
        if not configured:
            if current is None:
                yield adapter.engine_event(
                    plan.job_context,
                    f"Pool '{pool}' has no limit in this Dagster instance, so it holds no step back; give it "
                    f"one under `pools:` in .dagctl/config.yaml or with `dagster instance concurrency set {pool} N`.",
                    {"pool": pool},
                )
            continue
        limit = min(configured)
        if current == limit:
            continue
        if adapter.set_pool_limit(plan.instance, pool, limit):
            yield adapter.engine_event(
                plan.job_context,
                f"Pool '{pool}': limit {limit} from .dagctl/config.yaml (was {current if current is not None else 'unset'}).",
                {"pool": pool, "limit": limit},
            )
        else:
            yield adapter.engine_event(
                plan.job_context,
                f"Pool '{pool}' is not enforced: this Dagster instance's storage keeps no concurrency pools "
                "(use PostgreSQL storage, as a deployment does).",
                {"pool": pool},
            )
