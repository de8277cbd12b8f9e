"""What counting costs per statement (issue 32): SQLMesh's DuckDB engine adapter sending
``SELECT 1`` with the step's counting on and off, in alternating blocks, in one process.

    python benchmarks/query_counting_overhead.py [statements per block] [blocks]

``SELECT 1`` on an in-process DuckDB is about the cheapest statement a warehouse runs, so the
difference per statement is an upper bound of what counting adds to any real one. Prints the
median microseconds per statement of each, and their difference.
"""

from __future__ import annotations

import statistics
import sys
import time


def main(statements: int = 2000, blocks: int = 10) -> None:
    from sqlmesh.core.config import DuckDBConnectionConfig

    from dagctl_dagster.sqlmesh.internals import measuring_queries
    from dagctl_dagster.sqlmesh.internals.query_counting import _count_on

    plain = DuckDBConnectionConfig().create_engine_adapter()
    counted = DuckDBConnectionConfig().create_engine_adapter()
    _count_on([counted])
    timings: dict[str, list[float]] = {"off": [], "on": []}
    for block in range(blocks * 2):
        switch = ("on", "off")[block % 2] if block // 2 % 2 else ("off", "on")[block % 2]
        adapter = counted if switch == "on" else plain
        with measuring_queries() as spent:
            started = time.perf_counter()
            for _ in range(statements):
                adapter.execute("SELECT 1")
            seconds = time.perf_counter() - started
        if switch == "on":
            assert spent().queries == statements
        timings[switch].append(seconds / statements * 1e6)
    on, off = statistics.median(timings["on"]), statistics.median(timings["off"])
    print(f"counting off: median {off:.2f} µs per statement ({blocks} blocks of {statements})")
    print(f"counting on:  median {on:.2f} µs per statement ({blocks} blocks of {statements})")
    print(f"difference:   {on - off:+.2f} µs per statement ({(on / off - 1) * 100:+.1f}%)")


if __name__ == "__main__":
    main(*(int(arg) for arg in sys.argv[1:3]))
