"""Freshness: the completed intervals SQLMesh state records for each model of an environment."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlmesh import Context


@dataclass(frozen=True)
class ModelIntervals:
    """A model of an environment, its cron, and the end of its last completed interval in state."""

    fqn: str
    cron: str
    cron_tz: str | None
    start_ms: int | None
    last_end_ms: int | None


def completed_intervals(context: Context, environment: str) -> list[ModelIntervals]:
    """Every model of ``environment`` that has intervals (not external), as state records them.

    Empty when the environment does not exist. The caller closes the context: DuckDB state
    allows one process at a time.
    """
    env = context.state_sync.get_environment(environment)
    if env is None:
        return []
    snapshots = context.state_sync.get_snapshots(env.snapshots)
    found: list[ModelIntervals] = []
    for snapshot in snapshots.values():
        node = snapshot.node
        if getattr(snapshot, "is_external", False) or not getattr(node, "cron", None):
            continue
        intervals = snapshot.intervals or []
        tz = getattr(node, "cron_tz", None)
        start = intervals[0][0] if intervals else None
        found.append(
            ModelIntervals(
                fqn=snapshot.name,
                cron=str(node.cron),
                cron_tz=str(tz) if tz else None,
                start_ms=start,
                last_end_ms=max(end for _, end in intervals) if intervals else None,
            )
        )
    return sorted(found, key=lambda m: m.fqn)
