"""``sqlmesh janitor``, recording what it removed."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlmesh import Context


@dataclass(frozen=True)
class JanitorPass:
    """What one janitor pass removed: expired environments, dropped objects (in SQLMesh's order)."""

    expired_environments: list[str]
    cleaned_objects: list[str]
    duration_s: float


def run_janitor(context: Context) -> JanitorPass:
    """``context.run_janitor(ignore_ttl=False)``, recording the objects it dropped."""
    from sqlmesh.utils.date import now_timestamp

    started = time.perf_counter()
    expired = [env.name for env in context.state_sync.get_expired_environments(current_ts=now_timestamp())]
    cleaned: list[str] = []
    console = context.console
    original = console.update_cleanup_progress
    # The console reports each dropped object; whichever console the Context has, listen to it.
    console.update_cleanup_progress = cleaned.append  # type: ignore[method-assign,assignment]
    try:
        context.run_janitor(ignore_ttl=False)
    finally:
        console.update_cleanup_progress = original  # type: ignore[method-assign]
    return JanitorPass(
        expired_environments=sorted(expired), cleaned_objects=cleaned, duration_s=time.perf_counter() - started
    )
