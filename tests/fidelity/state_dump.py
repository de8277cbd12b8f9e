"""Print, as JSON, every snapshot's intervals in an environment of a SQLMesh project's state.

Run as a script with the working directory a `sqlmesh` user would run from, so the project's
relative paths resolve as they do for `sqlmesh`:  python state_dump.py ENV PATH [PATH ...]
Or several projects' states in one process, each read from its own working directory (the
Contexts are opened without loading any project, one after the other):
    python state_dump.py --targets '[{"cwd": DIR, "paths": [PATH, ...], "environment": ENV}, ...]'
which prints a JSON list, one dump per target, in order.
Kept out of the test process: a Context registers the project's Python macros, signals and
materializations globally, and holds the DuckDB file lock until closed.
"""

from __future__ import annotations

import json
import os
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


def dump_targets(targets: list[dict]) -> list[dict[str, object]]:
    dumps = []
    for target in targets:
        os.chdir(target["cwd"])
        dumps.append(dump(target["environment"], list(target["paths"])))
    return dumps


if __name__ == "__main__":
    if sys.argv[1] == "--targets":
        print(json.dumps(dump_targets(json.loads(sys.argv[2])), sort_keys=True))
    else:
        print(json.dumps(dump(sys.argv[1], sys.argv[2:]), sort_keys=True))
