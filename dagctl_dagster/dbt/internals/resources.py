"""The dbt seam's part in the code server and the run worker (see :mod:`dagctl_dagster.dbt.internals`).

Two private members of ``DbtCliResource`` run before dbt itself on every invocation:
``_cli_version`` starts ``dbt --version`` as a subprocess (a whole dbt import), and
``_initialize_dbt_core_adapter`` builds dbt's adapter in this process, which dagster-dbt only
uses to count rows and read columns. :class:`DagctlDbtCliResource` answers the version from
the installed distribution when the executable is this environment's own ``dbt`` (or
``dagctl-dbt``), and skips the adapter where nothing would use it.

Where dbt's adapter can open a second connection (every warehouse but DuckDB),
:func:`with_measurements` measures each built node from the run worker on a small pool while
dbt goes on, in dbt's order. It replaces dagster-dbt's ``DbtEventIterator.fetch_row_counts`` and
``fetch_column_metadata``, whose ordering loop (``dagster._core.utils.imap``) polls without
sleeping, and which hold every event back until dbt exits on DuckDB. On DuckDB, dbt's own
process measures (:mod:`.measuring`); :func:`measured_in_dbt` reads what it logged.
"""

from __future__ import annotations

import importlib.metadata
import queue
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject
from packaging import version

from dagctl_dagster.cost import QueryCost
from dagctl_dagster.dbt.internals.measuring import Measurement, cost_from_logged, measure, measuring_dbt_executable
from dagctl_dagster.names import COLUMN_SCHEMA_KEY, ROW_COUNT_KEY

if TYPE_CHECKING:
    from dbt.adapters.base.impl import BaseAdapter

__all__ = [
    "DagctlDbtCliResource",
    "cost_in_dbt",
    "dbt_core_version",
    "get_manifest_and_translator_from_dbt_assets",
    "is_duckdb_adapter",
    "measured_in_dbt",
    "measurement_metadata",
    "own_dbt_executable",
    "read_manifest",
    "release_warehouse",
    "with_measurements",
]


# -- dagster-dbt's unexported helpers ------------------------------------------------------------


def get_manifest_and_translator_from_dbt_assets(
    assets_def: dg.AssetsDefinition,
) -> tuple[Mapping[str, Any], DagsterDbtTranslator]:
    """The manifest and translator a ``@dbt_assets`` definition was built with."""
    from dagster_dbt.asset_utils import get_manifest_and_translator_from_dbt_assets as manifest_and_translator

    manifest, translator, _ = manifest_and_translator([assets_def])
    return manifest, translator


def read_manifest(manifest_path: Path) -> Mapping[str, Any]:
    """``manifest.json`` as dagster-dbt reads (and caches) it."""
    from dagster_dbt.dbt_manifest import read_manifest_path

    return read_manifest_path(manifest_path.resolve())


# -- dbt-core and its adapters -------------------------------------------------------------------


def dbt_core_version() -> str:
    """The dbt-core this process imports (what ``dbt --version`` reports as installed)."""
    from dbt.version import __version__

    return __version__


def is_duckdb_adapter(adapter: BaseAdapter | None) -> bool:
    return adapter is not None and type(adapter).__name__ == "DuckDBAdapter"


def release_warehouse(adapter: BaseAdapter | None) -> None:
    """Close the connections dagster-dbt's row counts opened in this process.

    dbt-duckdb keeps its DuckDB instance open (``keep_open``) at class level; left open, it
    would hold the warehouse's single-writer lock for as long as the run worker lives, and
    the next dbt process on that file would fail.
    """
    if adapter is None:
        return
    adapter.cleanup_connections()
    close_all = getattr(type(adapter.connections), "close_all_connections", None)
    if close_all is not None:
        close_all()


def own_dbt_executable() -> Path:
    """The ``dbt`` script installed beside this Python, the dbt-core this process imports."""
    return Path(sys.executable).with_name("dbt")


class DagctlDbtCliResource(DbtCliResource):
    """dagster-dbt's CLI resource without the work dbt's result does not need.

    ``in_process_adapter``: whether dbt's adapter is built in this process for each invocation
    (row counts). False for DuckDB, where a second connection to the file dbt writes is
    refused, so no count is taken there anyway.
    """

    in_process_adapter: bool = True

    def __init__(self, project_dir: str | Path | DbtProject, *, in_process_adapter: bool = True, **kwargs: Any):
        super().__init__(project_dir=project_dir, in_process_adapter=in_process_adapter, **kwargs)

    # dagster-dbt caches this per resource object; a run worker builds its resources per run.
    @property
    def _cli_version(self) -> version.Version:
        if Path(self.dbt_executable) in (own_dbt_executable(), measuring_dbt_executable()):
            return version.parse(importlib.metadata.version("dbt-core"))
        return _version_from_subprocess(self)

    def _initialize_dbt_core_adapter(self, args: Any) -> Any:
        if not self.in_process_adapter:
            return None
        return super()._initialize_dbt_core_adapter(args)


def _version_from_subprocess(resource: DbtCliResource) -> version.Version:
    cached = _SUBPROCESS_VERSIONS.get(resource.dbt_executable)
    if cached is None:
        cached = DbtCliResource._cli_version.func(resource)  # type: ignore[attr-defined]
        _SUBPROCESS_VERSIONS[resource.dbt_executable] = cached
    return cached


_SUBPROCESS_VERSIONS: dict[str, version.Version] = {}


def with_measurements(events: Iterator[Any], invocation: Any, *, threads: int) -> Iterator[Any]:
    """``events`` in their order, each model materialization with its :class:`Measurement`.

    The queries for each built node run on a pool while dbt goes on; an event is yielded as
    soon as it and every event before it are ready. Waiting is blocking (a queue fed by the
    stream's reader thread and by finished measurements), never polling.
    """
    adapter = invocation.adapter
    nodes = invocation.manifest.get("nodes", {})

    def measured(event: Any) -> Any:
        if not isinstance(event, (dg.Output, dg.AssetMaterialization)) or "unique_id" not in event.metadata:
            return event
        props = nodes.get(event.metadata["unique_id"].value)
        if props is None:
            return event
        measurement = measure(adapter, props, props.get("config", {}).get("materialized"))
        return (
            event
            if measurement is None
            else event.with_metadata({**event.metadata, **measurement_metadata(measurement)})
        )

    yield from _ordered_map(events, measured, threads=threads)


_STREAM_END = object()


def _ordered_map(items: Iterator[Any], func: Callable[[Any], Any], *, threads: int) -> Iterator[Any]:
    wakeups: queue.Queue[tuple[str, Any]] = queue.Queue()

    def read() -> None:
        try:
            for item in items:
                wakeups.put(("item", item))
        except BaseException as exc:  # raised in the consumer, after what came before it
            wakeups.put(("error", exc))
        wakeups.put(("item", _STREAM_END))

    reader = threading.Thread(target=read, name="dagctl-dbt-events", daemon=True)
    pending: deque[Future] = deque()
    stream_error: BaseException | None = None
    ended = False
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dagctl_dbt_row_count") as pool:
        reader.start()
        while not ended or pending:
            kind, value = wakeups.get()
            if kind == "error":
                stream_error = value
            elif kind == "item" and value is _STREAM_END:
                ended = True
            elif kind == "item":
                future = pool.submit(func, value)
                future.add_done_callback(lambda _f: wakeups.put(("done", None)))
                pending.append(future)
            while pending and pending[0].done():
                yield pending.popleft().result()
    reader.join()
    if stream_error is not None:
        raise stream_error


def measurement_metadata(measurement: Measurement) -> dict[str, Any]:
    """``dagster/column_schema`` and, unless a view, ``dagster/row_count``."""
    schema = dg.TableSchema(columns=[dg.TableColumn(name=name, type=kind) for name, kind in measurement.columns])
    found: dict[str, Any] = {COLUMN_SCHEMA_KEY: dg.MetadataValue.table_schema(schema)}
    if measurement.row_count is not None:
        found[ROW_COUNT_KEY] = dg.MetadataValue.int(measurement.row_count)
    return found


def cost_in_dbt(raw_event: Any) -> QueryCost | None:
    """What the node of this result event cost the warehouse, as ``dagctl-dbt`` logged it."""
    return cost_from_logged(getattr(raw_event, "_event_history_metadata", None) or {})


def measured_in_dbt(raw_event: Any) -> Measurement | None:
    """The :class:`Measurement` dbt's process logged before this result event (``dagctl-dbt``):
    dagster-dbt keeps the node's last JSON log line as the event's history metadata."""
    return Measurement.from_logged(getattr(raw_event, "_event_history_metadata", None) or {})
