"""The dbt seam: the only module that relies on dagster-dbt's, dbt-core's and dbt-duckdb's internals.

**Public** (usable anywhere in dagctl-dagster): what ``dagster_dbt/__init__.py`` exports
(``from X import Name as Name``; dagster-dbt has no ``__all__``), imported from ``dagster_dbt``
itself, with the public members of those classes (``DbtCliResource.cli``,
``DbtCliInvocation.stream_raw_events``, ``DagsterDbtTranslator.get_asset_key``, ...), and
subclassing ``DagsterDbtTranslator`` through its public ``get_*`` hooks. **Internal**, so here:
dagster-dbt's other modules and unexported helpers (``dagster_dbt.asset_utils``,
``dagster_dbt.dbt_manifest``, ``dagster_dbt.core.dbt_event_iterator``), its private members,
anything of dbt-core (``dbt.*``, whose only documented Python API, ``dbt.cli.main.dbtRunner``,
this project does not use), and dbt's adapter objects (dbt-adapters, dbt-duckdb), which
dagster-dbt hands out as ``DbtCliInvocation.adapter``. ``tests/test_seams.py`` fails when any
other module reaches into them; ``tests/test_dbt_internals.py`` pins every name used here to the
versions in :data:`TESTED_DAGSTER_DBT`, :data:`TESTED_DBT_CORE` and :data:`TESTED_DBT_DUCKDB`.

Two private members of ``DbtCliResource`` run before dbt itself on every invocation:
``_cli_version`` starts ``dbt --version`` as a subprocess (a whole dbt import), and
``_initialize_dbt_core_adapter`` builds dbt's adapter in this process, which dagster-dbt only
uses to count rows and read columns. :class:`DagctlDbtCliResource` answers the version from
the installed distribution when the executable is this environment's own ``dbt``, and skips
the adapter where nothing would use it. :func:`with_row_counts` replaces
``DbtEventIterator.fetch_row_counts``, whose ordering loop (``dagster._core.utils.imap``)
polls without sleeping while dbt builds.
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
from packaging.specifiers import SpecifierSet

if TYPE_CHECKING:
    from dbt.adapters.base.impl import BaseAdapter

# The versions every name used here is pinned on (tests/test_dbt_internals.py), as pyproject.toml
# declares them; the wheel test runs the lowest.
TESTED_DAGSTER_DBT = ">=0.29.5,<0.30"
TESTED_DBT_CORE = ">=1.11.2,<1.12"
TESTED_DBT_DUCKDB = ">=1.11.1,<1.12"
TESTED_VERSIONS = {"dagster-dbt": TESTED_DAGSTER_DBT, "dbt-core": TESTED_DBT_CORE, "dbt-duckdb": TESTED_DBT_DUCKDB}

__all__ = [
    "TESTED_DAGSTER_DBT",
    "TESTED_DBT_CORE",
    "TESTED_DBT_DUCKDB",
    "TESTED_VERSIONS",
    "DagctlDbtCliResource",
    "dbt_core_version",
    "get_manifest_and_translator_from_dbt_assets",
    "is_duckdb_adapter",
    "own_dbt_executable",
    "read_manifest",
    "release_warehouse",
    "untested_versions",
    "with_row_counts",
]


def untested_versions() -> dict[str, str]:
    """The installed distributions outside their tested range, with the installed version."""
    found: dict[str, str] = {}
    for distribution, tested in TESTED_VERSIONS.items():
        try:
            installed = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:  # dbt-duckdb is optional for other warehouses
            continue
        if version.parse(installed) not in SpecifierSet(tested):
            found[distribution] = installed
    return found


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
        if Path(self.dbt_executable) == own_dbt_executable():
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


def with_row_counts(events: Iterator[Any], invocation: Any, *, threads: int) -> Iterator[Any]:
    """``events`` in their order, each model materialization with its ``dagster/row_count``.

    The count query of each built table runs on a pool while dbt goes on; an event is yielded
    as soon as it and every event before it are ready. Waiting is blocking (a queue fed by the
    stream's reader thread and by finished counts), never polling.
    """
    from dagster_dbt.core.dbt_event_iterator import _fetch_row_count_metadata

    def counted(event: Any) -> Any:
        extra = _fetch_row_count_metadata(invocation, event)
        return event if not extra else event.with_metadata({**event.metadata, **extra})

    yield from _ordered_map(events, counted, threads=threads)


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


if _untested := untested_versions():  # pragma: no cover
    import warnings

    warnings.warn(
        "dagctl-dagster's dbt seam was tested with "
        + ", ".join(f"{name} {TESTED_VERSIONS[name]}" for name in _untested)
        + "; installed: "
        + ", ".join(f"{name} {installed}" for name, installed in _untested.items())
        + ". Run tests/test_dbt_internals.py before relying on it.",
        stacklevel=1,
    )
