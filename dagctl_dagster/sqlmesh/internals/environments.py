"""What SQLMesh state says of an environment: the one reader of its current plan id."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlmesh import Context


@dataclass(frozen=True)
class EnvironmentState:
    """An environment as state records it: absent, being updated, or finalized at a plan."""

    exists: bool
    plan_id: str | None = None
    finalized: bool = False
    expired: bool = False

    @property
    def current_plan_id(self) -> str | None:
        """The plan the environment is at; None when it is absent or expired (as a plan sees it)."""
        return self.plan_id if self.exists and not self.expired else None


def environment_state(context: Context, environment: str) -> EnvironmentState:
    """One read of the environment's summary (not its snapshots), by SQLMesh's name for it."""
    from sqlmesh.core.environment import Environment

    name = Environment.sanitize_name(environment)
    for summary in context.state_sync.get_environments_summary():
        if summary.name == name:
            return EnvironmentState(
                exists=True,
                plan_id=summary.plan_id,
                finalized=bool(summary.finalized_ts),
                expired=summary.expired,
            )
    return EnvironmentState(exists=False)


def wait_for_finalized(context: Context, environment: str, *, should_stop: Callable[[], bool]) -> EnvironmentState:
    """Waits, as ``sqlmesh run`` does, while another plan is updating the environment.

    Returns the environment's state once it is finalized or absent; raises ``SQLMeshError``
    after the project's ``run.environment_check_max_wait``.
    """
    from sqlmesh.utils.errors import SQLMeshError

    run_config = context.config.run
    attempts = max(1, run_config.environment_check_max_wait // max(1, run_config.environment_check_interval))
    for _ in range(attempts):
        state = environment_state(context, environment)
        if not state.exists or state.finalized:
            return state
        deadline = time.monotonic() + run_config.environment_check_interval
        while time.monotonic() < deadline:
            if should_stop():
                return state
            time.sleep(0.2)
    raise SQLMeshError(
        f"Environment '{environment}' is still being updated by another plan after "
        f"{run_config.environment_check_max_wait}s (the project's run.environment_check_max_wait)."
    )
