"""What SQLMesh's console reports while a plan applies, handed to this project's recorders."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

# (snapshot name, batch start/end, intervals in the batch, audits failed)
EvaluationRecorder = Callable[[str, tuple[int, int], int, int], None]
# (snapshot name, its error's reason in one line)
FailureRecorder = Callable[[str, str], None]


@contextlib.contextmanager
def recording_evaluations(
    evaluations: EvaluationRecorder | None, failures: FailureRecorder | None = None
) -> Iterator[None]:
    """Reports each batch SQLMesh evaluates (and completes) meanwhile to ``evaluations``, and
    each model that failed to ``failures``; a no-op unless the quiet console is installed."""
    from sqlmesh.core.console import get_console

    from dagctl_dagster.sqlmesh.internals.console import DagctlConsole

    console = get_console()
    if not isinstance(console, DagctlConsole) or (evaluations is None and failures is None):
        yield
        return
    console.recorder = evaluations
    console.failure_recorder = failures
    try:
        yield
    finally:
        console.recorder = None
        console.failure_recorder = None
