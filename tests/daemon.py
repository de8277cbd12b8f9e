"""A ``dagster-daemon`` for the tests where schedules or sensors are the point."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from conftest import venv_command


@contextmanager
def running_daemon(cwd: Path, env: Mapping[str, str], log: Path) -> Iterator[dict[str, Callable]]:
    """``dagster-daemon run -w workspace.yaml`` in ``cwd``, output to ``log``, stopped on exit.

    Yields ``alive``/``explain`` for :func:`waiting.wait_for`: a wait fails at once, with the
    daemon's log tail, when the daemon exits. The instance's storage is created first: two
    processes creating a fresh SQLite storage at once can stamp its schema twice.
    """
    dg.DagsterInstance.from_config(env["DAGSTER_HOME"]).dispose()
    with log.open("w") as out:
        daemon = subprocess.Popen(
            [venv_command("dagster-daemon"), "run", "-w", "workspace.yaml"],
            cwd=cwd,
            env=dict(env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive() -> str | None:
        return f"dagster-daemon exited ({daemon.returncode})" if daemon.poll() is not None else None

    def explain() -> str:
        return f"daemon log tail:\n{log.read_text()[-4000:]}"

    try:
        yield {"alive": alive, "explain": explain}
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
