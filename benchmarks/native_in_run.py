"""``sqlmesh`` CLI, unchanged, that also prints how long its run took: ``Context.run`` and, inside
it, the span of SQLMesh's model evaluations (first ``Scheduler.evaluate`` start → last end).

The claim-aware run's in-run time comes from Dagster's run record (run start → end); this is
the same split for native ``sqlmesh run``. ``Context.run`` also holds SQLMesh's scheduling
(state reads, missing intervals, batches), which an integration can do while Dagster starts
its run; the evaluation span is the part no integration of SQLMesh's evaluation avoids. Only
clocks are added: no other code of the CLI changes.

    python benchmarks/native_in_run.py .venv/bin/sqlmesh -p project run
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

RUN_MARKER = "bench: native Context.run seconds="
EVALUATION_MARKER = "bench: native evaluation span seconds="


def in_run_seconds(output: str) -> float | None:
    """The ``Context.run`` wall time this wrapper printed into ``output``, if it ran."""
    return _last_value(output, RUN_MARKER)


def evaluation_seconds(output: str) -> float | None:
    """The span of the model evaluations this wrapper printed into ``output``, if any ran."""
    return _last_value(output, EVALUATION_MARKER)


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
    from sqlmesh.cli.main import cli
    from sqlmesh.core.context import GenericContext
    from sqlmesh.core.scheduler import Scheduler

    evaluations = _Span()
    Scheduler.evaluate = evaluations.around(Scheduler.evaluate)  # type: ignore[method-assign]
    GenericContext.run = _timed(GenericContext.run, evaluations)  # type: ignore[method-assign]
    program, *arguments = sys.argv[1:]
    sys.argv = [program, *arguments]
    return cli()


if __name__ == "__main__":
    sys.exit(main())
