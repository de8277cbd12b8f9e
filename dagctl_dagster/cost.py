"""What a model's evaluation cost the warehouse: the statements its engine sent for it, and their time.

Each framework counts where its engine sends statements, on the thread that evaluates the
model, and adds no query of its own:

- SQLMesh: its engine adapters' execute path (``sqlmesh/internals/query_counting.py``);
- dbt: dbt's own query events in dbt's process (``dagctl-dbt``, ``dbt/internals/measuring.py``).

The time is the client's: from sending a statement to the driver returning (the warehouse's
execution plus the round trip). Nothing else is recorded of a statement; its text may hold
literals. A model nothing was counted for carries no cost at all, never a zero.

Example::

    cost = QueryCost(queries=4, query_time_s=0.012)
    cost.metadata()                      # {"warehouse_queries": 4, "warehouse_query_s": 0.012}
    QueryCost.from_metadata(materialization.metadata) + cost
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dagctl_dagster.names import WAREHOUSE_QUERIES_KEY, WAREHOUSE_QUERY_TIME_KEY

# `0` / `off` turns counting off in run workers and in dbt's process (the bench's A/B).
COUNT_QUERIES_ENV = "DAGCTL_COUNT_QUERIES"
_OFF = {"0", "off", "false", "no"}
_TIME_DECIMALS = 6


def counting_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether queries are counted (``DAGCTL_COUNT_QUERIES``; unset means on)."""
    return (os.environ if environ is None else environ).get(COUNT_QUERIES_ENV, "").strip().lower() not in _OFF


@dataclass(frozen=True)
class QueryCost:
    """Statements sent to the warehouse and the seconds they took, as the client saw them."""

    queries: int
    query_time_s: float

    def __add__(self, other: QueryCost) -> QueryCost:
        return QueryCost(self.queries + other.queries, self.query_time_s + other.query_time_s)

    def metadata(self) -> dict[str, int | float]:
        """Numeric metadata (Dagster plots it on the asset's page)."""
        return {
            WAREHOUSE_QUERIES_KEY: self.queries,
            WAREHOUSE_QUERY_TIME_KEY: round(self.query_time_s, _TIME_DECIMALS),
        }

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any]) -> QueryCost | None:
        """The cost in metadata (raw values or Dagster ``MetadataValue``s); None without one."""
        queries = _number(metadata.get(WAREHOUSE_QUERIES_KEY))
        seconds = _number(metadata.get(WAREHOUSE_QUERY_TIME_KEY))
        if not isinstance(queries, int) or seconds is None:
            return None
        return cls(queries, float(seconds))


def total(costs: Iterable[QueryCost | None]) -> QueryCost | None:
    """The sum of the costs there are; None when there is none."""
    found = [cost for cost in costs if cost is not None]
    if not found:
        return None
    result = found[0]
    for cost in found[1:]:
        result += cost
    return result


def _number(value: Any) -> int | float | None:
    raw = getattr(value, "value", value)
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return None
    return raw
