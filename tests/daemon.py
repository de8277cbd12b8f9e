"""A ``dagster-daemon`` for the tests where schedules or sensors are the point."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
from conftest import venv_command
from dagster._core.remote_origin import RemoteRepositoryOrigin


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


def schedule_due_at_start(home: str, cwd: Path, location: str, schedule: str, cron: str) -> None:
    """Record ``schedule`` (declared running in code) as started two minutes ago, as if the
    daemon had been down since: its first iteration launches the latest missed tick (Dagster's
    catch-up, one run), so a test of an every-minute schedule waits for no minute boundary.
    The scheduler finds the state by location, repository and schedule name."""
    from dagster._core.scheduler.instigation import (
        InstigatorState,
        InstigatorStatus,
        InstigatorType,
        ScheduleInstigatorData,
    )
    from dagster._core.workspace.load import location_origins_from_yaml_paths

    (origin,) = [
        o for o in location_origins_from_yaml_paths([str(cwd / "workspace.yaml")]) if o.location_name == location
    ]
    repository = RemoteRepositoryOrigin(code_location_origin=origin, repository_name="__repository__")
    state = InstigatorState(
        repository.get_instigator_origin(schedule),
        InstigatorType.SCHEDULE,
        InstigatorStatus.DECLARED_IN_CODE,
        ScheduleInstigatorData(cron, start_timestamp=time.time() - 120),
    )
    with dg.DagsterInstance.from_config(home) as instance:
        instance.add_instigator_state(state)
