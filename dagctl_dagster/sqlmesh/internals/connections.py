"""The warehouse and state connections a Context holds: how many tasks, cancelling, closing per thread."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlmesh import Context
    from sqlmesh.core.engine_adapter import EngineAdapter
    from sqlmesh.utils.connection_pool import ConnectionPool


def concurrent_tasks(context: Context) -> int:
    """How many tasks SQLMesh runs at once on the context's gateway (``sqlmesh run``'s workers)."""
    return max(1, int(context.concurrent_tasks))


def shares_one_cursor(context: Context) -> bool:
    """True when every thread would use one DB-API cursor (SQLMesh's single-task pool)."""
    from sqlmesh.utils.connection_pool import SingletonConnectionPool

    adapters = context.snapshot_evaluator.adapters.values()
    return any(isinstance(a._connection_pool, SingletonConnectionPool) for a in adapters)


def interrupt_queries(context: Context) -> int:
    """Asks every open warehouse connection of the context to cancel its running query.

    Returns how many connections were asked. Best effort: a driver without a cancel call
    is left to finish its statement.
    """
    asked = 0
    for connection in _open_connections(context):
        cancel = getattr(connection, "interrupt", None) or getattr(connection, "cancel", None)
        if callable(cancel):
            try:
                cancel()
                asked += 1
            except Exception:  # a connection closed meanwhile has nothing to cancel
                pass
    return asked


def _open_connections(context: Context) -> Iterable[Any]:
    """The DB-API connections and cursors the context's pools hold (any thread's)."""
    # The private attributes, not the properties: a property would open what is not open yet.
    evaluator = getattr(context, "_snapshot_evaluator", None)
    adapters = [getattr(context, "_engine_adapter", None), *(getattr(evaluator, "adapters", None) or {}).values()]
    seen: set[int] = set()
    for adapter in adapters:
        pool = getattr(adapter, "_connection_pool", None)
        if pool is None:
            continue
        candidates = [getattr(pool, "_connection", None)]
        candidates.extend((getattr(pool, "_thread_connections", None) or {}).values())
        candidates.extend((getattr(pool, "_thread_cursors", None) or {}).values())
        candidates.append(getattr(pool, "_cursor", None))
        for candidate in candidates:
            if candidate is not None and id(candidate) not in seen:
                seen.add(id(candidate))
                yield candidate


def release_thread_connections(context: Context | None) -> None:
    """Closes what SQLMesh opened for the calling thread (its cursor, or its own connection).

    Step threads are reused from model to model, as ``sqlmesh run`` reuses its workers; each
    closes what it opened when the run ends.
    """
    from sqlmesh.utils.connection_pool import ThreadLocalConnectionPool, ThreadLocalSharedConnectionPool

    if context is None:
        return
    for pool in _pools(context):
        try:
            if isinstance(pool, ThreadLocalConnectionPool):
                pool.close()
            elif isinstance(pool, ThreadLocalSharedConnectionPool):
                pool.close_cursor()
        except Exception:  # nothing was open on this thread
            pass


def _pools(context: Context) -> list[ConnectionPool]:
    evaluator = getattr(context, "_snapshot_evaluator", None)
    state_adapter: EngineAdapter | None = getattr(getattr(context, "_state_sync", None), "engine_adapter", None)
    pools = {
        id(pool): pool
        for adapter in [*(getattr(evaluator, "adapters", None) or {}).values(), state_adapter]
        if (pool := getattr(adapter, "_connection_pool", None)) is not None
    }
    return list(pools.values())
