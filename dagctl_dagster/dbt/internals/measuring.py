"""What dbt built, measured: the relation's columns with the warehouse's types, and its rows;
and what each node cost the warehouse.

Used from the run worker (:func:`~dagctl_dagster.dbt.internals.resources.with_measurements`,
every warehouse but DuckDB) and from dbt's own process: ``dagctl-dbt`` (:func:`main`) is dbt's
CLI run through ``dbtRunner``, with a first logger on dbt's event manager that, as dbt is about
to log a node's result, measures the relation through dbt's adapter and logs the measurement as
a ``JinjaLogInfo`` JSON line first, the way dagster-dbt's ``log_column_level_metadata`` macro
does. dagster-dbt keeps such a line for the node's result event, turns its ``columns`` into the
materialization's ``dagster/column_schema``, and does not print it. On DuckDB that is the only
way: the database file is dbt's alone while dbt runs (a second process is refused, and a
connection taken between two of dbt's would make dbt's next one fail).

On every warehouse, ``dagctl-dbt`` also counts each node's statements from dbt's own query
events (``SQLQuery`` as dbt sends one, on the node's connection; ``SQLQueryStatus`` with its
``elapsed`` time), with no query of its own, and logs the count in the same line
(:class:`NodeCost`). Not counted: transaction control (``BEGIN`` / ``COMMIT``, which dbt sends
as statements on PostgreSQL and psycopg2 sends for SQLMesh) and the measuring's own queries.

No Dagster or dagster-dbt import here: this module starts with every dbt invocation on DuckDB.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from dagctl_dagster.cost import QueryCost, counting_enabled

if TYPE_CHECKING:
    from dbt.adapters.base.impl import BaseAdapter
    from dbt_common.events.base_types import EventMsg

logger = logging.getLogger(__name__)

# The console script of :func:`main` (``[project.scripts]``).
MEASURING_DBT = "dagctl-dbt"
# The key of the row count in a measurement dbt's process logs (beside dagster-dbt's "columns").
MEASURED_ROWS = "dagctl_row_count"
# The keys of a node's statements and their seconds in the line dbt's process logs.
MEASURED_QUERIES = "dagctl_queries"
MEASURED_QUERY_S = "dagctl_query_s"
# dbt's query events, and what of them is not a node's cost.
_QUERY_EVENT = "SQLQuery"
_QUERY_STATUS_EVENT = "SQLQueryStatus"
_TRANSACTION_CONTROL = frozenset({"BEGIN", "COMMIT", "ROLLBACK"})
_MEASURING_CONNECTION = "dagctl_measure_"
# Materializations whose relation stores no rows (a view's are its query's, run anew).
_UNCOUNTED = frozenset({"view"})
# The events dbt logs when a node is done; dagster-dbt turns them into materializations.
_RESULT_EVENTS = frozenset({"LogModelResult", "LogSeedResult", "LogSnapshotResult"})
_SUCCESS = "success"


@dataclass(frozen=True)
class Measurement:
    """What the warehouse says of a relation dbt just built: its columns (name and the
    warehouse's own type name) and its rows, None for a view."""

    columns: tuple[tuple[str, str], ...]
    row_count: int | None

    def as_json(self) -> str:
        return json.dumps(self.as_dict())

    def as_dict(self) -> dict[str, Any]:
        columns = {name: {"data_type": kind} for name, kind in self.columns}
        return {"columns": columns, MEASURED_ROWS: self.row_count}

    @classmethod
    def from_logged(cls, logged: Mapping[str, Any]) -> Measurement | None:
        """The measurement in a line :func:`main` logged; None for anything else."""
        columns = logged.get("columns")
        if MEASURED_ROWS not in logged or not isinstance(columns, dict):
            return None
        rows = logged[MEASURED_ROWS]
        return cls(
            columns=tuple((str(name), str(column.get("data_type"))) for name, column in columns.items()),
            row_count=rows if isinstance(rows, int) else None,
        )


def cost_from_logged(logged: Mapping[str, Any]) -> QueryCost | None:
    """The node's cost in a line :func:`main` logged; None for anything else."""
    queries, seconds = logged.get(MEASURED_QUERIES), logged.get(MEASURED_QUERY_S)
    if not isinstance(queries, int) or not isinstance(seconds, int | float):
        return None
    return QueryCost(queries, float(seconds))


class NodeCost:
    """A dbt callback counting each node's statements and their time from dbt's query events.

    dbt fires ``SQLQuery`` before a statement and ``SQLQueryStatus`` after it succeeded, both on
    the thread that sends it and naming the node it runs for.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._by_node: dict[str, list[float]] = {}  # unique id -> [statements, seconds]
        self._sending = threading.local()  # the node this thread's last statement counts for

    def __call__(self, msg: EventMsg) -> None:
        name = msg.info.name
        if name == _QUERY_EVENT:
            self._sent(msg)
        elif name == _QUERY_STATUS_EVENT and getattr(self._sending, "node", None):
            self._spend(self._sending.node, 0, float(msg.data.elapsed))
            self._sending.node = None

    def _sent(self, msg: EventMsg) -> None:
        node = msg.data.node_info.unique_id
        counts = (
            node
            and not msg.data.conn_name.startswith(_MEASURING_CONNECTION)
            and msg.data.sql.strip().rstrip(";").upper() not in _TRANSACTION_CONTROL
        )
        self._sending.node = node if counts else None
        if counts:
            self._spend(node, 1, 0.0)

    def _spend(self, node: str, statements: int, seconds: float) -> None:
        with self._mutex:
            spent = self._by_node.setdefault(node, [0, 0.0])
            spent[0] += statements
            spent[1] += seconds

    def pop(self, node: str) -> QueryCost | None:
        """What the node cost so far (None: no statement), forgotten here."""
        with self._mutex:
            spent = self._by_node.pop(node, None)
        return QueryCost(int(spent[0]), spent[1]) if spent else None


def measure(adapter: BaseAdapter, relation: Mapping[str, Any], materialized: str | None) -> Measurement | None:
    """Columns from dbt's ``get_columns_in_relation`` (each column's ``dtype``, the warehouse's
    name: DuckDB's ``VARCHAR``, not dbt's rendering ``character varying(256)``); rows by
    ``count(*)``, not for a view. ``relation``: ``database``, ``schema``, ``alias`` and
    ``relation_name`` (a manifest node, or dbt's ``node_relation``). None when the warehouse
    does not answer: a node not measured is reported without numbers, never with guessed ones."""
    if materialized == "ephemeral" or not relation.get("relation_name"):
        return None
    try:
        with adapter.connection_named(f"dagctl_measure_{relation['relation_name']}"):
            built = adapter.Relation.create(
                database=relation.get("database"), schema=relation.get("schema"), identifier=relation.get("alias")
            )
            columns = tuple((column.name, column.dtype) for column in adapter.get_columns_in_relation(built))
            rows = None
            if materialized not in _UNCOUNTED:
                _, table = adapter.execute(f"select count(*) from {relation['relation_name']}", fetch=True)
                rows = int(table[0][0])
    except Exception as exc:  # never fails the build: dbt's own thread may be the caller
        logger.warning("could not measure %s: %s", relation.get("relation_name"), exc)
        return None
    return Measurement(columns=columns, row_count=rows)


def measuring_dbt_executable() -> Path:
    """``dagctl-dbt``, installed beside this Python."""
    return Path(sys.executable).with_name(MEASURING_DBT)


def main() -> None:
    """``dagctl-dbt <dbt args>``: dbt's CLI, each built node measured before dbt logs its result.

    Exit status as ``dbt``'s: 0 success, 1 a node failed, 2 dbt itself failed (or was stopped).
    """
    from dbt.cli.main import dbtRunner

    callbacks: list[Any] = [_first_logger_measures]
    if counting_enabled():
        callbacks.append(_NODE_COST)
    result = dbtRunner(callbacks=callbacks).invoke(sys.argv[1:])
    sys.exit(0 if result.success else 1 if result.exception is None else 2)


_NODE_COST = NodeCost()


class _MeasuringLogger:
    """The first of dbt's loggers: for a node's successful result, it logs the node's
    measurement (DuckDB) and its cost first, in one line, from the thread that built the node,
    so the line precedes the result (dagster-dbt keeps a node's last such line)."""

    name = "dagctl_measure"

    def filter(self, msg: EventMsg) -> bool:
        return msg.info.name in _RESULT_EVENTS and msg.data.node_info.node_status == _SUCCESS

    def write_line(self, msg: EventMsg) -> None:
        from dbt.adapters.factory import FACTORY
        from dbt.events.types import JinjaLogInfo
        from dbt_common.events.functions import fire_event
        from google.protobuf.json_format import MessageToDict

        node = msg.data.node_info
        try:
            logged: dict[str, Any] = {}
            (adapter,) = FACTORY.adapters.values()  # one profile, one adapter per dbt invocation
            if _measures_in_dbt(adapter):
                relation = MessageToDict(node.node_relation, preserving_proto_field_name=True)
                measurement = measure(cast("BaseAdapter", adapter), relation, node.materialized)
                logged.update(measurement.as_dict() if measurement is not None else {})
            cost = _NODE_COST.pop(node.unique_id)
            if cost is not None:
                logged.update({MEASURED_QUERIES: cost.queries, MEASURED_QUERY_S: cost.query_time_s})
            if logged:
                node_info = MessageToDict(node, preserving_proto_field_name=True)
                fire_event(JinjaLogInfo(msg=json.dumps(logged), node_info=node_info))
        except Exception as exc:  # raised here, it would fail dbt's logging of the node
            logger.warning("could not measure %s: %s", node.unique_id, exc)

    def flush(self) -> None:
        pass


def _measures_in_dbt(adapter: object) -> bool:
    """DuckDB's file is dbt's alone while it runs: only dbt's process can measure there.
    Elsewhere the run worker measures (:func:`~.resources.with_measurements`)."""
    return type(adapter).__name__ == "DuckDBAdapter"


_INSTALL_LOCK = threading.Lock()


def _first_logger_measures(_msg: EventMsg) -> None:
    """A dbt callback. dbt sets its loggers up as the command starts, then calls callbacks
    after its loggers for every event; the first call puts the measuring logger first."""
    from dbt_common.events.event_manager_client import get_event_manager

    manager = get_event_manager()
    with _INSTALL_LOCK:
        if not any(isinstance(each, _MeasuringLogger) for each in manager.loggers):
            manager.loggers.insert(0, _MeasuringLogger())  # type: ignore[arg-type]
