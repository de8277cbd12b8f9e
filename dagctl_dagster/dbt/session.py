"""One dbt project's session in a run: its CLI resource, as the claim-aware executor drives it.

The project's resource (``dbt_<project>``) is dagster-dbt's ``DbtCliResource`` and, per run,
a :class:`~dagctl_dagster.execution.framework.RunFramework`: the executor finds it among
the run's resources exactly as it finds a SQLMesh session, and

- tells it the run's bound on concurrent steps (``prepare``): dbt's ``--threads``;
- hands the build step its grant (``start_step``): the models the run leaves out of the
  build (claimed by another live run, or paused) and the step's claim check;
- stops the running ``dbt`` process when the run is terminated (``interrupt``): dbt gets
  SIGINT, as from a terminal, so it cancels its warehouse queries; one that does not exit
  soon after is killed. The step then fails as stopped (not run: ``run_stopped``).

Under Dagster's own executors nothing is granted: the build leaves out nothing, and
``--threads`` is ``MAX_CONCURRENT_MODELS``.

Example (the step body; see :func:`dagctl_dagster.dbt.asset_factory.run_dbt_build`)::

    grant = dbt.grant_of(context)
    invocation = dbt.cli(["build", "--threads", str(dbt.max_concurrent or 5)], context=context)
    with dbt.stoppable(invocation) as stop:
        ...                   # stream dbt's events
    if stop.stopped: ...      # the run was terminated while dbt ran
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster_dbt import DbtProject
from pydantic import PrivateAttr

from dagctl_dagster.dbt.internals.measuring import measuring_dbt_executable
from dagctl_dagster.dbt.internals.resources import DagctlDbtCliResource
from dagctl_dagster.execution.framework import Preparation, RunFramework, RunSetup, StepGrant, StepGrants, StopReason

if TYPE_CHECKING:
    from dagctl_dagster.execution.framework import OpContext

logger = logging.getLogger(__name__)

# How long dbt gets to cancel its queries and exit after SIGINT before it is killed; within
# the executor's wait for stopping steps.
KILL_AFTER_SECONDS = 10.0


@dataclass
class Stop:
    """Whether the run stopped one dbt invocation (set by :meth:`DbtRunSession.interrupt`)."""

    stopped: bool = False


class _RunState:
    """What one run's session knows: the run's bound, the grants, the dbt processes running."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.max_concurrent: int | None = None
        self.grants = StepGrants()
        self.stopping = False
        self.running: dict[subprocess.Popen[bytes], Stop] = {}


class DbtRunSession(DagctlDbtCliResource, RunFramework):
    """dagster-dbt's CLI resource of project ``project_name``, and its session in a run."""

    project_name: str
    # The limit of the warehouse pool the build runs in (`pools:`): dbt's --threads stays below it.
    pool_limit: int | None = None
    _state: _RunState = PrivateAttr(default_factory=_RunState)

    def __init__(
        self, project_dir: str | Path | DbtProject, *, project_name: str, in_process_adapter: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(project_dir, in_process_adapter=in_process_adapter, project_name=project_name, **kwargs)

    @classmethod
    def of_project(
        cls, project_name: str, dbt_project: DbtProject, *, measured_by_dbt: bool, pool_limit: int | None = None
    ) -> DbtRunSession:
        """``measured_by_dbt``: dbt's own process measures what it builds (``dagctl-dbt``; DuckDB,
        whose file is dbt's alone while it runs), so no adapter is built in the run worker.
        Otherwise the run worker measures through its own adapter. ``dagctl-dbt`` runs dbt on
        every warehouse when installed: it counts each node's statements."""
        from dagctl_dagster.dbt.manifest import dbt_executable

        measuring = measuring_dbt_executable()
        return cls(
            project_dir=dbt_project,
            dbt_executable=str(measuring) if measuring.exists() else dbt_executable(),
            in_process_adapter=not measured_by_dbt,
            project_name=project_name,
            pool_limit=pool_limit,
        )

    # -- what the executor asks ----------------------------------------------------------

    @property
    def projects(self) -> frozenset[str]:
        return frozenset({self.project_name})

    def prepare(self, setup: RunSetup) -> Preparation:
        with self._state.lock:
            self._state.max_concurrent = setup.max_concurrent
        return Preparation()

    def start_step(self, grant: StepGrant) -> None:
        self._state.grants.give(grant)

    def stop_reason(self) -> StopReason | None:
        return None  # a dbt project has no environment to be re-planned under a run

    def interrupt(self) -> None:
        with self._state.lock:
            self._state.stopping = True
            for stop in self._state.running.values():
                stop.stopped = True
            running = list(self._state.running)
        for process in running:
            _stop(process)

    def thread_ending(self) -> None:
        pass  # dbt runs in its own process: a step thread opens nothing of its own

    # -- what the build step asks --------------------------------------------------------

    def grant_of(self, context: OpContext) -> StepGrant:
        return self._state.grants.of(context)

    @property
    def max_concurrent(self) -> int | None:
        """The run's bound on concurrent steps, dbt's ``--threads``; None when no claim-aware
        executor prepared this session."""
        with self._state.lock:
            return self._state.max_concurrent

    @property
    def stopping(self) -> bool:
        with self._state.lock:
            return self._state.stopping

    @contextmanager
    def stoppable(self, invocation: Any) -> Iterator[Stop]:
        """While the block runs, terminating the run stops ``invocation``'s dbt process."""
        process: subprocess.Popen[bytes] = invocation.process
        stop = Stop()
        with self._state.lock:
            self._state.running[process] = stop
            stop.stopped = self._state.stopping
        if stop.stopped:  # terminated between the step's start and dbt's
            _stop(process)
        try:
            yield stop
        finally:
            with self._state.lock:
                self._state.running.pop(process, None)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGINT now; SIGKILL if dbt has not exited in time. Never raises, never blocks."""
    if process.poll() is not None:
        return
    try:
        process.send_signal(signal.SIGINT)
    except OSError:  # exited meanwhile
        return

    def kill_if_running() -> None:
        if process.poll() is None:
            logger.warning("dbt (pid %s) did not exit after SIGINT; killing it", process.pid)
            process.kill()

    timer = threading.Timer(KILL_AFTER_SECONDS, kill_if_running)
    timer.daemon = True
    timer.start()
