"""``sqlmesh`` CLI, unchanged, that also prints how long its ``Context.run`` took (wall time).

The claim-aware run's in-run time comes from Dagster's run record (run start → end); this is
the same split for native ``sqlmesh run``: the time inside ``Context.run`` against the rest
of the process (interpreter start, imports, loading the project's Context). Only the clock
is added: no other code of the CLI changes.

    python benchmarks/native_in_run.py .venv/bin/sqlmesh -p project run
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from typing import Any

MARKER = "bench: native Context.run seconds="


def in_run_seconds(output: str) -> float | None:
    """The ``Context.run`` wall time this wrapper printed into ``output``, if it ran."""
    found = [line for line in output.splitlines() if line.startswith(MARKER)]
    return float(found[-1][len(MARKER) :]) if found else None


def _timed(run: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(run)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return run(*args, **kwargs)
        finally:
            print(f"{MARKER}{time.perf_counter() - started:.4f}", file=sys.stderr, flush=True)

    return timed


def main() -> int:
    from sqlmesh.cli.main import cli
    from sqlmesh.core.context import GenericContext

    GenericContext.run = _timed(GenericContext.run)  # type: ignore[method-assign]
    program, *arguments = sys.argv[1:]
    sys.argv = [program, *arguments]
    return cli()


if __name__ == "__main__":
    sys.exit(main())
