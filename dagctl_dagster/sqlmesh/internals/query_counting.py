"""Counting the statements SQLMesh's engine adapters send for one model, and timing them.

Almost every statement SQLMesh runs on a warehouse passes through ``EngineAdapter._execute``
(``cursor.execute``; ``execute``, ``fetchall``, the pre-ping), where SQLMesh itself counts rows
for its execution tracker. Two more paths send one statement each without it: pandas'
``read_sql_query`` behind ``fetchdf`` on PostgreSQL-like engines (SQLMesh's data-object lookups
use it), and DuckDB's load of a Python model's DataFrame (``cursor.sql``). :func:`count_queries`
wraps those three methods on the snapshot evaluator's adapters of one run (not the state
sync's: interval bookkeeping is not a model's cost); :func:`measuring_queries` counts, on the
calling thread only, what passes there. Model steps run on their own threads, so each counts
its own model, audits included.

Not counted: what a driver sends by itself (psycopg2's ``BEGIN`` before a statement,
``COMMIT`` on ``commit()``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from dagctl_dagster.cost import QueryCost

if TYPE_CHECKING:
    from sqlmesh.core.engine_adapter import EngineAdapter

    from dagctl_dagster.sqlmesh.internals.scheduling import ScheduledRun

_COUNTED_MARK = "_dagctl_counts_queries"
_current = threading.local()


class _Tally:
    __slots__ = ("queries", "seconds")

    def __init__(self) -> None:
        self.queries = 0
        self.seconds = 0.0


def count_queries(run: ScheduledRun) -> None:
    """Makes the run's evaluator adapters count for :func:`measuring_queries` (idempotent)."""
    _count_on(run.scheduler.snapshot_evaluator.adapters.values())


def _count_on(adapters: Iterable[EngineAdapter]) -> None:
    for adapter in adapters:
        if getattr(adapter, _COUNTED_MARK, False):
            continue
        adapter._execute = _counting(adapter._execute)  # type: ignore[method-assign]
        for name in _one_statement_methods(adapter):
            setattr(adapter, name, _counting(getattr(adapter, name)))
        setattr(adapter, _COUNTED_MARK, True)


def _one_statement_methods(adapter: EngineAdapter) -> list[str]:
    """The adapter's methods that send one statement without ``_execute``."""
    from sqlmesh.core.engine_adapter.duckdb import DuckDBEngineAdapter
    from sqlmesh.core.engine_adapter.mixins import PandasNativeFetchDFSupportMixin
    from sqlmesh.core.engine_adapter.postgres import PostgresEngineAdapter

    kind = type(adapter)
    found = []
    # PostgreSQL's own only commits after the mixin's pandas query.
    pandas_fetches = (PandasNativeFetchDFSupportMixin._fetch_native_df, PostgresEngineAdapter._fetch_native_df)
    if kind._fetch_native_df in pandas_fetches:
        found.append("_fetch_native_df")
    if kind._df_to_source_queries is DuckDBEngineAdapter._df_to_source_queries:
        found.append("_df_to_source_queries")
    return found


def _counting(send: Callable[..., Any]) -> Callable[..., Any]:
    """``send`` (one statement) counted once, its time without that of statements it nests
    (the pre-ping of the transaction around pandas' query)."""

    def _sending(*args: Any, **kwargs: Any) -> Any:
        tally: _Tally | None = getattr(_current, "tally", None)
        if tally is None:
            return send(*args, **kwargs)
        nested_before = tally.seconds
        started = time.perf_counter()
        try:
            return send(*args, **kwargs)
        finally:  # a statement the warehouse refused was still sent
            nested = tally.seconds - nested_before
            tally.seconds += time.perf_counter() - started - nested
            tally.queries += 1

    return _sending


@contextmanager
def measuring_queries() -> Iterator[Callable[[], QueryCost]]:
    """Counts what this thread's statements cost while the block runs; yields the reader."""
    tally = _Tally()
    outer = getattr(_current, "tally", None)
    _current.tally = tally
    try:
        yield lambda: QueryCost(tally.queries, tally.seconds)
    finally:
        _current.tally = outer
