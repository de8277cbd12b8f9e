"""What models cost the warehouse, read back from Dagster's records: a run's totals, and the
``warning`` for a model that cost far more than usual.

A model's materialization carries its statements and their time (:mod:`dagctl_dagster.cost`).
:func:`costly_model` warns when either exceeds its factor of the ``cost:`` block × the model's
average over ``history_days`` (``min_history`` earlier materializations that carry it), on the
tiered sensor's path, like a slow model. :func:`run_cost` sums a run's materializations for
its observation on ``dagctl/<project>/runs``.

Example::

    alert = costly_model("analytics", instance, record, loaded.config.cost_for(project))
    run_cost(instance, run_id)   # QueryCost(queries=120, query_time_s=3.4), or None
"""

from __future__ import annotations

from statistics import fmean

import dagster as dg

from dagctl_dagster.alerts.rules import Alert
from dagctl_dagster.config import CostConfig
from dagctl_dagster.cost import QueryCost, total

_DAY_S = 24 * 3600
_HISTORY_LIMIT = 100
_PAGE = 1000


def costly_model(
    project: str, instance: dg.DagsterInstance, record: dg.EventLogRecord, cost: CostConfig
) -> Alert | None:
    """A warning when the materialization's statements or their time exceed the factors."""
    current = _cost_of(record)
    key = record.asset_key
    if current is None or key is None or (cost.queries_factor is None and cost.query_time_factor is None):
        return None
    earlier = _earlier_costs(instance, record, key, cost.history_days)
    if len(earlier) < cost.min_history:
        return None
    over = _exceeded(current, earlier, cost)
    if not over:
        return None
    model = key.to_user_string()
    return Alert(
        tier="warning",
        project=project,
        cause=f"warning:costly_model:{model}",
        summary=f"model {model} cost the warehouse more than usual: {'; '.join(over)} "
        f"(average of {len(earlier)} materializations)",
        run_id=record.run_id or None,
        facts={"model": model, "queries": current.queries, "query_time_s": current.query_time_s},
    )


def _exceeded(current: QueryCost, earlier: list[QueryCost], cost: CostConfig) -> list[str]:
    over: list[str] = []
    queries = fmean(c.queries for c in earlier)
    if cost.queries_factor is not None and queries > 0 and current.queries > cost.queries_factor * queries:
        over.append(f"{current.queries} statements, {current.queries / queries:.1f}× its average of {queries:.1f}")
    seconds = fmean(c.query_time_s for c in earlier)
    if cost.query_time_factor is not None and seconds > 0 and current.query_time_s > cost.query_time_factor * seconds:
        over.append(
            f"{current.query_time_s:.2f}s in statements, {current.query_time_s / seconds:.1f}× its average of {seconds:.2f}s"
        )
    return over


def _earlier_costs(
    instance: dg.DagsterInstance, record: dg.EventLogRecord, key: dg.AssetKey, days: int
) -> list[QueryCost]:
    history = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=key, before_storage_id=record.storage_id, after_timestamp=record.timestamp - days * _DAY_S
        ),
        limit=_HISTORY_LIMIT,
    ).records
    return [cost for earlier in history if (cost := _cost_of(earlier)) is not None]


def _cost_of(record: dg.EventLogRecord) -> QueryCost | None:
    materialization = record.asset_materialization
    return QueryCost.from_metadata(materialization.metadata) if materialization is not None else None


def run_cost(instance: dg.DagsterInstance, run_id: str) -> QueryCost | None:
    """The sum of what the run's materializations cost; None when none carries a cost."""
    costs: list[QueryCost | None] = []
    cursor = None
    while True:
        page = instance.get_records_for_run(
            run_id, cursor=cursor, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=_PAGE
        )
        for record in page.records:
            materialization = record.event_log_entry.asset_materialization
            if materialization is not None:
                costs.append(QueryCost.from_metadata(materialization.metadata))
        if not page.has_more:
            return total(costs)
        cursor = page.cursor
