"""Where a run's CPU goes, by thread CPU time: a profile that other work on the machine barely moves.

Wall-clock profiles (py-spy, cProfile) of a run with concurrent step threads mostly measure
who waited for the GIL, and on a shared machine who waited for a core. This wraps the engine's
own CLI and counts, with ``time.thread_time()`` (CPU of the calling thread only), what each part
of a model step costs the thread that runs it. Printed to stderr when the process exits.

    # the claim-aware run (any `dagster` CLI command that executes a job of this project):
    python benchmarks/cpu_probe.py dagster job execute -f definitions.py -j bench_run
    # native, on the same project:
    python benchmarks/cpu_probe.py sqlmesh -p project run

For ``dagster``: per model step, the step thread's CPU split into SQLMesh's evaluation of the
model's units (``internals.execute_unit``), Dagster's event-log writes (``store_event``),
upstream data-version reads, and the console log of each event; the executor's main thread
per step; and the process's CPU by phase (imports, definitions load, run creation, the run).
For ``sqlmesh``: ``Scheduler.evaluate`` per model, ``Context.run`` and the whole process. For
both, the CPU of each OS thread (the step threads, the main thread, DuckDB's own, ...).
"""

from __future__ import annotations

import atexit
import collections
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

_totals: collections.Counter[str] = collections.Counter()
_phases: list[tuple[str, float, float]] = []
_lock = threading.Lock()
_inside = threading.local()


def _thread_cpu(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """Adds the calling thread's CPU in ``function`` to ``name``, per thread kind; an outer
    measured part owns what it calls."""

    def measured(*args: Any, **kwargs: Any) -> Any:
        if getattr(_inside, "part", None) is not None:
            return function(*args, **kwargs)
        _inside.part = name
        started = time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            spent = time.thread_time() - started
            _inside.part = None
            where = "main" if threading.current_thread() is threading.main_thread() else "step"
            with _lock:
                _totals[f"{name}@{where}"] += spent

    return measured


def _phase(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """The process's CPU (all threads) and wall time in ``function``."""

    def measured(*args: Any, **kwargs: Any) -> Any:
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            _phases.append((name, time.process_time() - cpu, time.perf_counter() - wall))

    return measured


def _dagster() -> Callable[[], Any]:
    started = time.process_time()
    from dagster._cli import main

    _phases.append(("import dagster", time.process_time() - started, 0.0))
    import dagster._core.code_pointer as code_pointer
    import dagster._core.execution.api as execution_api
    from dagster._core.execution.context import data_version_cache
    from dagster._core.instance import DagsterInstance
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage

    import dagctl_dagster.execution.step_machine as step_machine
    import dagctl_dagster.sqlmesh.internals as internals
    from dagctl_dagster.sqlmesh.session import SQLMeshRunSession

    code_pointer.load_python_file = _phase(
        "definitions load (imports of the code location)", code_pointer.load_python_file
    )
    DagsterInstance.create_run_for_job = _phase("run creation (planned events)", DagsterInstance.create_run_for_job)  # type: ignore[method-assign]
    execution_api.execute_run = _phase("the run (start to end)", execution_api.execute_run)
    SQLMeshRunSession._prepare = _phase("  of it: SQLMesh session prepare", SQLMeshRunSession._prepare)  # type: ignore[method-assign]
    SqliteEventLogStorage.store_event = _thread_cpu("event-log writes", SqliteEventLogStorage.store_event)  # type: ignore[method-assign]
    try:
        from dagster_postgres.event_log.event_log import PostgresEventLogStorage

        PostgresEventLogStorage.store_event = _thread_cpu("event-log writes", PostgresEventLogStorage.store_event)  # type: ignore[method-assign]
    except ImportError:
        pass
    cache = data_version_cache.DataVersionCache
    cache.fetch_external_input_asset_version_info = _thread_cpu(  # type: ignore[method-assign]
        "upstream data-version reads", cache.fetch_external_input_asset_version_info
    )
    internals.execute_unit = _thread_cpu("SQLMesh evaluation (execute_unit)", internals.execute_unit)
    import logging

    logging.StreamHandler.emit = _thread_cpu("console log of events", logging.StreamHandler.emit)  # type: ignore[method-assign]
    run_step = step_machine.run_step

    def counted_run_step(*args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return run_step(*args, **kwargs)
        finally:
            with _lock:
                _totals["step thread"] += time.thread_time() - started
                _totals["steps"] += 1

    step_machine.run_step = counted_run_step
    import dagctl_dagster.execution.executor as executor

    iterate = executor.ClaimAwareExecutor._iterate

    def counted_iterate(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            yield from iterate(self, *args, **kwargs)
        finally:
            _totals["executor main thread"] += time.thread_time() - started

    executor.ClaimAwareExecutor._iterate = counted_iterate  # type: ignore[method-assign]
    atexit.register(_report_dagster)
    return main


class _ThreadSampler:
    """CPU of every OS thread of the process (``/proc/self/task``), sampled until exit so that
    threads which ended early count too; grouped by thread name (Python's where it has one)."""

    def __init__(self, period_s: float = 0.05) -> None:
        self._cpu: dict[int, float] = {}
        self._names: dict[int, str] = {}
        self._tick = os.sysconf("SC_CLK_TCK")
        self._period_s = period_s

    def start(self) -> None:
        threading.Thread(target=self._loop, daemon=True, name="cpu-probe-sampler").start()

    def _loop(self) -> None:
        while True:
            self.sample()
            time.sleep(self._period_s)

    def sample(self) -> None:
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                with open(f"/proc/self/task/{tid}/comm") as comm:
                    name = comm.read().strip()
            except OSError:
                continue  # the thread ended between the listing and the read
            cpu = (int(fields[11]) + int(fields[12])) / self._tick
            self._cpu[int(tid)] = max(self._cpu.get(int(tid), 0.0), cpu)
            self._names.setdefault(int(tid), name)
        for thread in threading.enumerate():
            if thread.native_id is not None:
                self._names[thread.native_id] = thread.name

    def lines(self) -> list[str]:
        self.sample()
        groups: dict[str, list[float]] = collections.defaultdict(list)
        for tid, cpu in self._cpu.items():
            name = self._names.get(tid, "?")
            groups[name.rstrip("0123456789_-") or name].append(cpu)
        ranked = sorted(groups.items(), key=lambda group: -sum(group[1]))
        return ["process CPU by OS thread (user + system):"] + [
            f"  {name}: {len(cpus)} thread(s), {sum(cpus):.2f} s" for name, cpus in ranked if sum(cpus) >= 0.01
        ]


_threads = _ThreadSampler()


def _report_dagster() -> None:
    steps = max(_totals["steps"], 1)
    ms = lambda seconds: f"{1000 * seconds / steps:.2f} ms"  # noqa: E731
    parts = [
        "SQLMesh evaluation (execute_unit)",
        "event-log writes",
        "upstream data-version reads",
        "console log of events",
    ]
    named = sum(_totals[f"{part}@step"] for part in parts)
    lines = [f"cpu_probe: {_totals['steps']} model steps; CPU per step, by thread CPU time"]
    lines.append(f"  step thread, all: {ms(_totals['step thread'])}")
    for part in parts:
        lines.append(f"    {part}: {ms(_totals[f'{part}@step'])}")
    lines.append(f"    the rest (Dagster's step machinery, the asset body): {ms(_totals['step thread'] - named)}")
    main_thread = _totals["executor main thread"] - sum(_totals[f"{part}@main"] for part in parts)
    lines.append(f"  executor main thread, all: {ms(_totals['executor main thread'])}")
    lines.append(f"    event-log writes (the run's engine events): {ms(_totals['event-log writes@main'])}")
    lines.append(f"    the rest (launching, claims, plan state): {ms(main_thread)}")
    lines.append("process CPU by phase (wall beside it):")
    lines += [f"  {name}: {cpu:.2f} s CPU, {wall:.2f} s wall" for name, cpu, wall in _phases if cpu or wall]
    lines.append(f"  process total: {time.process_time():.2f} s CPU")
    lines += _threads.lines()
    print("\n".join(lines), file=sys.stderr, flush=True)


def _sqlmesh() -> Callable[[], Any]:
    from sqlmesh.cli.main import cli
    from sqlmesh.core.context import Context
    from sqlmesh.core.scheduler import Scheduler

    Scheduler.evaluate = _thread_cpu("Scheduler.evaluate", Scheduler.evaluate)  # type: ignore[method-assign]
    evaluate = Scheduler.evaluate

    def counted(*args: Any, **kwargs: Any) -> Any:
        with _lock:
            _totals["models"] += 1
        return evaluate(*args, **kwargs)

    Scheduler.evaluate = counted  # type: ignore[method-assign]
    Context.run = _phase("Context.run", Context.run)  # type: ignore[method-assign]
    atexit.register(_report_sqlmesh)
    return cli


def _report_sqlmesh() -> None:
    models = max(_totals["models"], 1)
    evaluate = _totals["Scheduler.evaluate@step"] + _totals["Scheduler.evaluate@main"]
    lines = [f"cpu_probe: {_totals['models']} model evaluations; CPU per model, by thread CPU time"]
    lines.append(f"  Scheduler.evaluate: {1000 * evaluate / models:.2f} ms")
    for name, cpu, wall in _phases:
        lines.append(
            f"  {name}: {cpu:.2f} s CPU ({1000 * cpu / models:.2f} ms per model, all threads), {wall:.2f} s wall"
        )
    lines.append(f"  process total: {time.process_time():.2f} s CPU")
    lines += _threads.lines()
    print("\n".join(lines), file=sys.stderr, flush=True)


if __name__ == "__main__":
    program, *arguments = sys.argv[1:]
    entry = {"dagster": _dagster, "sqlmesh": _sqlmesh}[program.rsplit("/", 1)[-1]]()
    _threads.start()
    sys.argv = [program, *arguments]
    sys.exit(entry())
