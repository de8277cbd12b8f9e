"""Run a fixture repository natively (`sqlmesh plan` + `sqlmesh run`) and through Dagster
(`dagster job execute`), each on its own copy, and compare what the two left behind.

The comparison is engine-neutral where it can be: `warehouse_snapshot` fingerprints every
table and view of DuckDB files, `diff_mappings` names what differs. Only `state_intervals`
knows SQLMesh.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import yaml

FIDELITY_DIR = Path(__file__).resolve().parent
PROJECTS_DIR = FIDELITY_DIR / "projects"
REPO_ROOT = FIDELITY_DIR.parent.parent
VENV_BIN = REPO_ROOT / ".venv" / "bin"
COMMAND_TIMEOUT_S = 300
OUTPUT_TAIL_LINES = 80
ERROR_LINE = re.compile(r"\b(\w+(Error|Exception)|Failure|RUN_FAILURE|STEP_FAILURE)\b")
DUCKDB_SUFFIXES = (".duckdb", ".db")
DUCKDB_MAGIC = b"DUCK"
NOT_WAREHOUSE_DIRS = frozenset({".cache", "logs", "__pycache__", "target"})
# SQLMesh's state schema: its rows hold timestamps of when things ran, never equal twice.
STATE_SCHEMAS = frozenset({"sqlmesh"})
# Settings that would make the Dagster side differ from a default deployment.
INHERITED_ENV_PREFIXES = ("DAGCTL_", "SQLMESH__", "DAGSTER_")
INHERITED_ENV_NAMES = frozenset({"MAX_CONCURRENT_MODELS"})


# --- fixtures ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fixture:
    """A fixture repository: `.dagctl/config.yaml`, SQLMesh projects, optional `fidelity.yaml`."""

    name: str
    root: Path
    projects: tuple[str, ...]
    jobs: tuple[str, ...]
    native_cwd: str
    native_paths: tuple[str, ...]
    setup_sql: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def fixture_names() -> list[str]:
    return sorted(p.name for p in PROJECTS_DIR.iterdir() if (p / ".dagctl" / "config.yaml").is_file())


def load_fixture(root: Path) -> Fixture:
    config = yaml.safe_load((root / ".dagctl" / "config.yaml").read_text())
    projects = {p["name"]: p["path"] for p in config["projects"]}
    extra_path = root / "fidelity.yaml"
    extra = yaml.safe_load(extra_path.read_text()) if extra_path.is_file() else {}
    native = extra.get("native") or {}
    if "cwd" not in native and len(projects) != 1:
        raise ValueError(f"{extra_path}: native.cwd is required when the config has several projects")
    return Fixture(
        name=root.name,
        root=root,
        projects=tuple(projects),
        jobs=tuple(extra.get("jobs") or [f"{name}_run" for name in projects]),
        native_cwd=native.get("cwd", next(iter(projects.values()))),
        native_paths=tuple(native.get("paths", ())),
        setup_sql={db: tuple(stmts) for db, stmts in (extra.get("setup_sql") or {}).items()},
    )


def prepare_copy(fixture: Fixture, destination: Path) -> Path:
    """A fresh copy of the fixture, with the tables its users create outside SQLMesh."""
    shutil.copytree(
        fixture.root,
        destination,
        ignore=shutil.ignore_patterns("*.duckdb", "*.duckdb.wal", *NOT_WAREHOUSE_DIRS),
    )
    for database, statements in fixture.setup_sql.items():
        with duckdb.connect(str(destination / database)) as con:
            for statement in statements:
                con.execute(statement)
    return destination


# --- commands ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandResult:
    args: tuple[str, ...]
    cwd: Path
    returncode: int | None
    output: str
    timed_out: bool

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out

    def describe(self) -> str:
        status = (
            f"timed out after {COMMAND_TIMEOUT_S} s and was killed" if self.timed_out else f"exit {self.returncode}"
        )
        tail = "\n".join(self.output.splitlines()[-OUTPUT_TAIL_LINES:])
        return (
            f"$ (cd {self.cwd} && {' '.join(self.args)})  -> {status}\n"
            f"first error: {self.first_error() or '-'}\n--- last {OUTPUT_TAIL_LINES} lines ---\n{tail}"
        )

    def first_error(self) -> str | None:
        """The first line that names an error, to read before the tail."""
        for line in self.output.splitlines():
            if ERROR_LINE.search(line):
                return line.strip()
        return None


def clean_env(**overrides: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(INHERITED_ENV_PREFIXES) and key not in INHERITED_ENV_NAMES
    }
    env.update(overrides)
    return env


def run_command(
    args: Sequence[str], cwd: Path, env: Mapping[str, str], timeout: float = COMMAND_TIMEOUT_S
) -> CommandResult:
    """Run in its own process group; on timeout the whole group is killed."""
    process = subprocess.Popen(
        list(args),
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout)
        return CommandResult(tuple(args), cwd, process.returncode, output, timed_out=False)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        return CommandResult(tuple(args), cwd, process.returncode, output, timed_out=True)


def run_native(fixture: Fixture, copy: Path, log_dir: Path) -> list[CommandResult]:
    """`sqlmesh plan --auto-apply --no-prompts`, then `sqlmesh run` twice; stops at a failure."""
    sqlmesh = [str(VENV_BIN / "sqlmesh"), *[arg for path in fixture.native_paths for arg in ("-p", path)]]
    steps = [[*sqlmesh, "plan", "--auto-apply", "--no-prompts"], [*sqlmesh, "run"], [*sqlmesh, "run"]]
    return _run_steps(steps, copy / fixture.native_cwd, clean_env(), log_dir / "native")


def run_dagster(fixture: Fixture, copy: Path, work_dir: Path, rounds: int = 2) -> list[CommandResult]:
    """Each job through `dagster job execute`, started from another directory, then each again
    (``rounds`` times in all)."""
    definitions = copy / "definitions.py"
    config_path = (copy / ".dagctl" / "config.yaml").resolve()
    definitions.write_text(
        f"from dagctl_dagster import load_definitions\n\ndefs = load_definitions({str(config_path)!r})\n"
    )
    home = work_dir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    elsewhere = elsewhere_dir(work_dir)
    elsewhere.mkdir(parents=True, exist_ok=True)
    execute = [str(VENV_BIN / "dagster"), "job", "execute", "-f", str(definitions)]
    steps = [[*execute, "-j", job] for job in fixture.jobs] * rounds
    return _run_steps(steps, elsewhere, clean_env(DAGSTER_HOME=str(home)), work_dir / "dagster", "RUN_SUCCESS")


def elsewhere_dir(work_dir: Path) -> Path:
    return work_dir / "elsewhere"


def _run_steps(
    steps: list[list[str]], cwd: Path, env: Mapping[str, str], log_dir: Path, success_marker: str | None = None
) -> list[CommandResult]:
    log_dir.mkdir(parents=True, exist_ok=True)
    results: list[CommandResult] = []
    for index, args in enumerate(steps):
        result = run_command(args, cwd, env)
        (log_dir / f"{index}.log").write_text(result.describe() + "\n\n" + result.output)
        if result.ok and success_marker and success_marker not in result.output:
            result = CommandResult(result.args, cwd, 1, result.output + f"\n[harness] no {success_marker}", False)
        results.append(result)
        if not result.ok:
            break
    return results


def failed_step(results: Sequence[CommandResult], expected_steps: int) -> CommandResult | None:
    if len(results) == expected_steps and all(r.ok for r in results):
        return None
    return results[-1]


# --- the warehouse ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TableFingerprint:
    """What a table or view holds, independent of row order."""

    table_type: str
    columns: tuple[tuple[str, str], ...]
    row_count: int
    checksum: str


def duckdb_files(root: Path) -> list[Path]:
    return sorted(
        path
        for path in root.rglob("*")
        if path.suffix in DUCKDB_SUFFIXES
        and not NOT_WAREHOUSE_DIRS.intersection(path.relative_to(root).parts)
        and is_duckdb_file(path)
    )


def is_duckdb_file(path: Path) -> bool:
    """DuckDB's file header, not the suffix: a `.db` may as well be SQLite."""
    if not path.is_file():
        return False
    with path.open("rb") as handle:
        return handle.read(12)[8:12] == DUCKDB_MAGIC


def warehouse_snapshot(root: Path, files: Iterable[Path] | None = None) -> dict[str, TableFingerprint]:
    """Every table and view (outside SQLMesh's state schema) of every DuckDB file under root,
    keyed `<file relative to root>:<catalog>.<schema>.<name>`."""
    snapshot: dict[str, TableFingerprint] = {}
    for path in duckdb_files(root) if files is None else files:
        with duckdb.connect(str(path), read_only=True) as con:
            for key, fingerprint in _fingerprint_database(con):
                snapshot[f"{path.relative_to(root)}:{key}"] = fingerprint
    return snapshot


def _fingerprint_database(con: duckdb.DuckDBPyConnection) -> Iterable[tuple[str, TableFingerprint]]:
    catalog = con.execute("SELECT current_database()").fetchone()[0]
    tables = con.execute(
        "SELECT table_schema, table_name, table_type FROM information_schema.tables "
        "WHERE table_catalog = ? ORDER BY 1, 2",
        [catalog],
    ).fetchall()
    for schema, name, table_type in tables:
        if schema in STATE_SCHEMAS:
            continue
        yield f"{catalog}.{schema}.{name}", _fingerprint_table(con, catalog, schema, name, table_type)


def _fingerprint_table(
    con: duckdb.DuckDBPyConnection, catalog: str, schema: str, name: str, table_type: str
) -> TableFingerprint:
    columns = tuple(
        (column, data_type)
        for column, data_type in con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_catalog = ? AND table_schema = ? AND table_name = ? ORDER BY ordinal_position",
            [catalog, schema, name],
        ).fetchall()
    )
    try:
        rows = con.execute(f'SELECT * FROM "{catalog}"."{schema}"."{name}"').fetchall()
    except duckdb.Error as exc:
        # A view that cannot be read is a result too: both sides must fail alike.
        return TableFingerprint(table_type, columns, -1, f"error: {type(exc).__name__}: {exc}")
    return TableFingerprint(table_type, columns, len(rows), rows_checksum(rows))


def rows_checksum(rows: Iterable[tuple[Any, ...]]) -> str:
    digest = hashlib.sha256()
    for line in sorted(repr(row) for row in rows):
        digest.update(line.encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]


# --- SQLMesh state ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotIntervals:
    fingerprint: str
    kind: str
    intervals: tuple[tuple[str, str], ...]
    dev_intervals: tuple[tuple[str, str], ...]


def state_intervals(
    cwd: Path, paths: Sequence[str] = (".",), environment: str = "prod"
) -> dict[str, SnapshotIntervals]:
    """Every snapshot of the environment (models, external models, standalone audits) with its
    merged intervals, read through a SQLMesh Context opened in `cwd` (a separate process)."""
    return _intervals_of(_state_dump(cwd, paths, environment))


@dataclass(frozen=True)
class StateTarget:
    """Where a `sqlmesh` user would read an environment's state from: the directory and `-p` paths."""

    cwd: Path
    paths: Sequence[str] = (".",)
    environment: str = "prod"


@dataclass(frozen=True)
class StateRead:
    intervals: dict[str, SnapshotIntervals]
    versions: dict[str, str]  # snapshot name -> version


def read_states(*targets: StateTarget) -> list[StateRead]:
    """`state_intervals` and `state_versions` of several targets, read by one separate process
    (a Context for each, opened in the target's directory, one after the other): what reading
    them one process each would give, without starting SQLMesh once per target."""
    spec = [{"cwd": str(t.cwd), "paths": list(t.paths or (".",)), "environment": t.environment} for t in targets]
    result = run_command(
        [str(VENV_BIN / "python"), str(FIDELITY_DIR / "state_dump.py"), "--targets", json.dumps(spec)],
        REPO_ROOT,
        clean_env(),
    )
    if not result.ok:
        raise AssertionError(f"reading SQLMesh state failed:\n{result.describe()}")
    dumps = json.loads(result.output.strip().splitlines()[-1])
    assert len(dumps) == len(targets), dumps
    return [StateRead(_intervals_of(dumped), _versions_of(dumped)) for dumped in dumps]


def _intervals_of(dumped: dict[str, Any]) -> dict[str, SnapshotIntervals]:
    return {
        name: SnapshotIntervals(
            fingerprint=entry["fingerprint"],
            kind=entry["kind"],
            intervals=_readable(entry["intervals"]),
            dev_intervals=_readable(entry["dev_intervals"]),
        )
        for name, entry in dumped["snapshots"].items()
    }


def state_versions(cwd: Path, paths: Sequence[str] = (".",), environment: str = "prod") -> dict[str, str]:
    """Each snapshot's version in the environment (what Dagster shows as an asset's code version)."""
    return _versions_of(_state_dump(cwd, paths, environment))


def _versions_of(dumped: dict[str, Any]) -> dict[str, str]:
    return {name: entry["version"] for name, entry in dumped["snapshots"].items()}


def _state_dump(cwd: Path, paths: Sequence[str], environment: str) -> dict[str, Any]:
    result = run_command(
        [str(VENV_BIN / "python"), str(FIDELITY_DIR / "state_dump.py"), environment, *(paths or ["."])],
        cwd,
        clean_env(),
    )
    if not result.ok:
        raise AssertionError(f"reading SQLMesh state failed:\n{result.describe()}")
    return json.loads(result.output.strip().splitlines()[-1])


def _readable(intervals: list[list[int]]) -> tuple[tuple[str, str], ...]:
    return tuple((_iso(start), _iso(end)) for start, end in intervals)


def _iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M")


# --- comparison -------------------------------------------------------------------------------


def diff_mappings(
    label: str, native: Mapping[str, Any], other: Mapping[str, Any], other_name: str = "dagster"
) -> list[str]:
    """One line per key that is missing, extra or different, naming both values."""
    diffs: list[str] = []
    for key in sorted(native.keys() | other.keys()):
        if key not in other:
            diffs.append(f"{label} {key}: native={native[key]!r}, {other_name}=<missing>")
        elif key not in native:
            diffs.append(f"{label} {key}: native=<missing>, {other_name}={other[key]!r}")
        elif native[key] != other[key]:
            diffs.append(f"{label} {key}: native={native[key]!r}, {other_name}={other[key]!r}")
    return diffs


@dataclass(frozen=True)
class Outcome:
    """What one side left behind."""

    warehouse: dict[str, TableFingerprint]
    state: dict[str, SnapshotIntervals]


def collect_outcome(fixture: Fixture, copy: Path) -> Outcome:
    (outcome,) = collect_outcomes(fixture, copy)
    return outcome


def collect_outcomes(fixture: Fixture, *copies: Path) -> list[Outcome]:
    """`collect_outcome` of each copy, their states read by one process."""
    states = read_states(*(StateTarget(copy / fixture.native_cwd, fixture.native_paths or (".",)) for copy in copies))
    return [
        Outcome(warehouse=warehouse_snapshot(copy), state=state.intervals)
        for copy, state in zip(copies, states, strict=True)
    ]


def vacuity_problems(outcome: Outcome) -> list[str]:
    """Reasons a comparison against this outcome would prove nothing."""
    problems = []
    if not any(f.row_count > 0 for f in outcome.warehouse.values()):
        problems.append(f"the native warehouse holds no rows ({len(outcome.warehouse)} tables/views)")
    if not any(s.intervals for s in outcome.state.values()):
        problems.append("no snapshot in the native prod environment has intervals")
    return problems


def diff_outcomes(native: Outcome, other: Outcome, other_name: str = "dagster") -> list[str]:
    return diff_mappings("table", native.warehouse, other.warehouse, other_name) + diff_mappings(
        "snapshot", native.state, other.state, other_name
    )


def utc_today() -> str:
    return datetime.now(UTC).date().isoformat()
