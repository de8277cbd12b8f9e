"""``dbt parse`` in this process, through dbt-core's programmatic entry point (``dbtRunner``).

A code server or run worker that loads a dbt project has already imported most of dbt (through
dagster-dbt), so parsing here costs the parse alone; a ``dbt parse`` subprocess would import
dbt and its adapter again first. dbt's invocations are not safe to run at the same time in one
process, so one parse runs at a time; another process is kept out by the caller's file lock.

dbt's console output is discarded: a failure comes back as its message, which the caller
reports once, with the project and the file it names. dbt's event loggers are put back as they
were, so that later dbt events in this process (dagster-dbt's in-process adapter) go neither to
the discarded console nor to the parse's log file.
"""

from __future__ import annotations

import contextlib
import io
import threading
from pathlib import Path

_ONE_INVOCATION_AT_A_TIME = threading.Lock()


def parse_in_process(project_dir: Path, *, profiles_dir: Path, target: str | None, target_path: Path) -> str | None:
    """Write ``target_path/manifest.json``; None when dbt succeeded, else dbt's error message."""
    # Imported here: dagster-dbt does not import dbt's CLI, and a load whose manifest is
    # current never parses, so only a parse pays for it.
    from dbt.cli.main import dbtRunner
    from dbt_common.events.event_manager_client import get_event_manager

    arguments = [
        "parse",
        "--quiet",
        "--no-send-anonymous-usage-stats",
        "--project-dir",
        str(project_dir),
        "--profiles-dir",
        str(profiles_dir),
        "--target-path",
        str(target_path),
        "--log-path",
        str(target_path),
        *(["--target", target] if target else []),
    ]
    with _ONE_INVOCATION_AT_A_TIME, contextlib.redirect_stdout(io.StringIO()):
        events = get_event_manager()
        loggers, callbacks = list(events.loggers), list(events.callbacks)
        try:
            result = dbtRunner().invoke(arguments)
        finally:
            events.loggers[:], events.callbacks[:] = loggers, callbacks
    if result.success:
        return None
    return str(result.exception) if result.exception is not None else "dbt parse did not succeed"
