"""The only place that relies on dagster-dbt's private behaviour.

Two private members of ``DbtCliResource`` run before dbt itself on every invocation:
``_cli_version`` starts ``dbt --version`` as a subprocess (a whole dbt import), and
``_initialize_dbt_core_adapter`` builds dbt's adapter in this process, which dagster-dbt only
uses to count rows and read columns. :class:`DagctlDbtCliResource` answers the version from
the installed distribution when the executable is this environment's own ``dbt``, and skips
the adapter where nothing would use it. :func:`with_row_counts` replaces
``DbtEventIterator.fetch_row_counts``, whose ordering loop (``dagster._core.utils.imap``)
polls without sleeping while dbt builds. :data:`TESTED_DAGSTER_DBT_MINOR` names the version
``tests/test_dbt_internals.py`` pins.
"""

from __future__ import annotations

import importlib.metadata
import queue
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dagster_dbt
from dagster_dbt import DbtCliResource, DbtProject
from packaging import version

TESTED_DAGSTER_DBT_MINOR = "0.29"
DAGSTER_DBT_VERSIONS = ">=0.29.5,<0.30"  # what pyproject.toml declares; tests/test_dbt_internals.py

__all__ = ["TESTED_DAGSTER_DBT_MINOR", "DagctlDbtCliResource", "own_dbt_executable", "with_row_counts"]


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


if ".".join(dagster_dbt.__version__.split(".")[:2]) != TESTED_DAGSTER_DBT_MINOR:  # pragma: no cover
    import warnings

    warnings.warn(
        f"dagctl-dagster's dbt seam was tested with dagster-dbt {TESTED_DAGSTER_DBT_MINOR}.x; this is "
        f"dagster-dbt {dagster_dbt.__version__}. Run tests/test_dbt_internals.py before relying on it.",
        stacklevel=1,
    )
