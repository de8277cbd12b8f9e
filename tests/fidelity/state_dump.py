"""Print, as JSON, every snapshot's intervals in an environment of a SQLMesh project's state.

Run as a script with the working directory a `sqlmesh` user would run from, so the project's
relative paths resolve as they do for `sqlmesh`:  python state_dump.py ENV PATH [PATH ...]
Kept out of the test process: a Context registers the project's Python macros, signals and
materializations globally, and holds the DuckDB file lock until closed.
"""

from __future__ import annotations

import json
import sys

from sqlmesh import Context


def _ranges(intervals: list[tuple[int, int]]) -> list[list[int]]:
    return [[int(start), int(end)] for start, end in intervals]


def dump(environment: str, paths: list[str]) -> dict[str, object]:
    context = Context(paths=paths, load=False)
    try:
        env = context.state_reader.get_environment(environment)
        if env is None:
            return {"environment": None, "snapshots": {}}
        snapshots = context.state_reader.get_snapshots(env.snapshots)
        return {
            "environment": environment,
            "snapshots": {
                snapshot.name: {
                    "fingerprint": snapshot.identifier,
                    "version": snapshot.version,
                    "kind": snapshot.node.__class__.__name__
                    if not snapshot.is_model
                    else str(snapshot.model.kind.name),
                    "intervals": _ranges(snapshot.intervals),
                    "dev_intervals": _ranges(snapshot.dev_intervals),
                }
                for snapshot in snapshots.values()
            },
        }
    finally:
        context.close()


if __name__ == "__main__":
    print(json.dumps(dump(sys.argv[1], sys.argv[2:]), sort_keys=True))
