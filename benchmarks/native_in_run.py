"""``sqlmesh`` CLI, unchanged, that also prints how long its run took: ``Context.run`` and, inside
it, the span of SQLMesh's model evaluations (first ``Scheduler.evaluate`` start → last end).

The claim-aware run's in-run time comes from Dagster's run record (run start → end); this is
the same split for native ``sqlmesh run``. ``Context.run`` also holds SQLMesh's scheduling
(state reads, missing intervals, batches); the evaluation span is the part no integration of
SQLMesh's evaluation avoids, even one that could do the scheduling while Dagster starts its run
(docs/benchmarks.md says why the floor the targets carry takes the whole ``Context.run``).
Only clocks are added: no other code of the CLI changes.

    python benchmarks/native_in_run.py .venv/bin/sqlmesh -p project run

With ``DAGCTL_BENCH_STEP_EVENTS_HOME`` set to a ``DAGSTER_HOME``, each model evaluation is also
followed, in its own thread, by what a Dagster step of that model stores at least: its
STEP_START, STEP_OUTPUT, ASSET_MATERIALIZATION and STEP_SUCCESS (a real stock-Dagster step's
events, with a model step's metadata, under the model's own step and asset key), written to
that instance's event log the way the claim-aware run writes them (connections held open).
The evaluation span then holds SQLMesh's evaluations plus the least event-log work of one
Dagster step per model: the floor of any integration whose steps are models. In that mode
Dagster is imported first, and the wrapper also prints what importing SQLMesh adds to a
process that has Dagster (not the project's Context, whose load the CLI does its own way).
"""

from __future__ import annotations

import functools
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

RUN_MARKER = "bench: native Context.run seconds="
EVALUATION_MARKER = "bench: native evaluation span seconds="
STEP_EVENTS_MARKER = "bench: Dagster steps recorded="
SQLMESH_IMPORT_MARKER = "bench: SQLMesh import after Dagster's seconds="
STEP_EVENTS_HOME_ENV = "DAGCTL_BENCH_STEP_EVENTS_HOME"


def in_run_seconds(output: str) -> float | None:
    """The ``Context.run`` wall time this wrapper printed into ``output``, if it ran."""
    return _last_value(output, RUN_MARKER)


def evaluation_seconds(output: str) -> float | None:
    """The span of the model evaluations this wrapper printed into ``output``, if any ran."""
    return _last_value(output, EVALUATION_MARKER)


def sqlmesh_import_seconds(output: str) -> float | None:
    """With step events: importing SQLMesh's Context and scheduler into a process that has
    Dagster; what a Dagster run worker adds before it can evaluate SQLMesh at all."""
    return _last_value(output, SQLMESH_IMPORT_MARKER)


def steps_recorded(output: str) -> int | None:
    """How many models' step events this wrapper stored, when asked to (``STEP_EVENTS_HOME_ENV``)."""
    value = _last_value(output, STEP_EVENTS_MARKER)
    return None if value is None else int(value)


def _last_value(output: str, marker: str) -> float | None:
    found = [line for line in output.splitlines() if line.startswith(marker)]
    return float(found[-1][len(marker) :]) if found else None


class _Span:
    """First start and last end of the calls of a function, from any thread."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.last: float | None = None
        self._lock = threading.Lock()

    def around(self, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def spanned(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            with self._lock:
                self.first = started if self.first is None else min(self.first, started)
            try:
                return function(*args, **kwargs)
            finally:
                with self._lock:
                    self.last = time.perf_counter()

        return spanned

    @property
    def seconds(self) -> float | None:
        return None if self.first is None or self.last is None else self.last - self.first


class _StepEvents:
    """Stores one Dagster step's events after each model evaluation, in the evaluating thread."""

    def __init__(self, home: str) -> None:
        import contextlib
        import uuid

        import dagster as dg

        from benchmarks.event_batch_probe import _step_events
        from dagctl_dagster.execution.dagster_adapter import storage_connections_held_open

        (self._template,) = _step_events(1)
        self._instance = dg.DagsterInstance.from_config(home)
        self._run_id = str(uuid.uuid4())
        self._instance.add_run(dg.DagsterRun(job_name="__ASSET_JOB", run_id=self._run_id))
        self._held_open = contextlib.ExitStack()
        self._held_open.enter_context(storage_connections_held_open(self._instance, max_connections=8))
        self.recorded = 0
        self._lock = threading.Lock()

    def after(self, evaluate: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(evaluate)
        def evaluated_then_recorded(scheduler: Any, snapshot: Any, *args: Any, **kwargs: Any) -> Any:
            result = evaluate(scheduler, snapshot, *args, **kwargs)
            self._record(snapshot.name)
            return result

        return evaluated_then_recorded

    def _record(self, model_name: str) -> None:
        import dagster as dg

        parts = [part.strip('"') for part in model_name.split(".")][-2:]
        step_key = "__".join(parts)
        storage = self._instance.event_log_storage
        for entry in self._template:
            event = entry.dagster_event._replace(step_key=step_key)
            data = event.event_specific_data
            if event.event_type_value == "ASSET_MATERIALIZATION":
                materialization = data.materialization._replace(asset_key=dg.AssetKey(parts))
                event = event._replace(event_specific_data=data._replace(materialization=materialization))
            elif event.event_type_value == "STEP_OUTPUT":
                handle = data.step_output_handle._replace(step_key=step_key)
                event = event._replace(event_specific_data=data._replace(step_output_handle=handle))
            storage.store_event(
                entry._replace(run_id=self._run_id, step_key=step_key, timestamp=time.time(), dagster_event=event)
            )
        with self._lock:
            self.recorded += 1

    def close(self) -> None:
        self._held_open.close()
        self._instance.dispose()
        print(f"{STEP_EVENTS_MARKER}{self.recorded}", file=sys.stderr, flush=True)


def _timed(run: Callable[..., Any], evaluations: _Span) -> Callable[..., Any]:
    @functools.wraps(run)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return run(*args, **kwargs)
        finally:
            print(f"{RUN_MARKER}{time.perf_counter() - started:.4f}", file=sys.stderr, flush=True)
            if evaluations.seconds is not None:
                print(f"{EVALUATION_MARKER}{evaluations.seconds:.4f}", file=sys.stderr, flush=True)

    return timed


def main() -> int:
    home = os.environ.get(STEP_EVENTS_HOME_ENV)
    steps = _StepEvents(home) if home else None  # Dagster first: SQLMesh's import is then what it adds
    importing = time.perf_counter()
    from sqlmesh.core.context import GenericContext
    from sqlmesh.core.scheduler import Scheduler

    imported = time.perf_counter() - importing  # the CLI's own modules (below) are not an integration's
    from sqlmesh.cli.main import cli

    evaluations = _Span()
    evaluate = steps.after(Scheduler.evaluate) if steps else Scheduler.evaluate
    Scheduler.evaluate = evaluations.around(evaluate)  # type: ignore[method-assign]
    GenericContext.run = _timed(GenericContext.run, evaluations)  # type: ignore[method-assign]
    program, *arguments = sys.argv[1:]
    sys.argv = [program, *arguments]
    try:
        return cli()
    finally:
        if steps:
            steps.close()
            print(f"{SQLMESH_IMPORT_MARKER}{imported:.4f}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
