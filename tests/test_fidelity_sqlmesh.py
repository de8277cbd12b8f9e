"""Issue 13's acceptance: every fixture repository under tests/fidelity/projects, run through
Dagster (`<project>_run` from another directory, default settings), leaves exactly the tables,
views and SQLMesh intervals that `sqlmesh plan` + `sqlmesh run` leave on an identical copy.

Each job's first run (the one that plans and backfills) goes through the real `dagster job
execute`, a process of its own; the second (what `sqlmesh run` does next) is the run that
command starts, made in the test's process (the definitions loaded afresh from the file, from
the same other directory, with the same settings), which spares a CLI start per job."""

from __future__ import annotations

import os
import time
from pathlib import Path

import duckdb
import pytest
from fidelity.harness import (
    PROJECTS_DIR,
    Fixture,
    Outcome,
    SnapshotIntervals,
    clean_env,
    collect_outcome,
    collect_outcomes,
    diff_outcomes,
    duckdb_files,
    elsewhere_dir,
    failed_step,
    fixture_names,
    load_fixture,
    prepare_copy,
    run_command,
    run_dagster,
    run_native,
    utc_today,
    vacuity_problems,
    warehouse_snapshot,
)
from in_process_runs import execute_job_in_process, started_like_the_cli

NATIVE_STEPS = 3  # plan, run, run


def native_run(fixture: Fixture, work: Path) -> Path:
    """A copy of the fixture after `sqlmesh plan` + `sqlmesh run` twice (its outcome not read yet)."""
    copy = prepare_copy(fixture, work / "native")
    results = run_native(fixture, copy, work / "logs")
    failed = failed_step(results, NATIVE_STEPS)
    assert failed is None, f"[{fixture.name}] native sqlmesh failed (a fixture problem):\n{failed.describe()}"
    return copy


def checked_native(fixture: Fixture, outcome: Outcome) -> Outcome:
    problems = vacuity_problems(outcome)
    assert not problems, f"[{fixture.name}] the comparison would prove nothing: {problems}"
    return outcome


def native_outcome_of(fixture: Fixture, copy: Path) -> Outcome:
    return checked_native(fixture, collect_outcome(fixture, copy))


def native_outcome(fixture: Fixture, work: Path) -> Outcome:
    return native_outcome_of(fixture, native_run(fixture, work))


class NativeOutcomes:
    """Native outcomes this module computed, by fixture, each with the UTC day it was computed on:
    a native run of a fixture is compared once with Dagster's and once with a second native run
    (the harness's control), so the control reuses the first one of the same day instead of
    running the fixture natively a third time."""

    def __init__(self) -> None:
        self._by_fixture: dict[str, tuple[str, Outcome]] = {}

    def cached(self, fixture: Fixture, day: str) -> Outcome | None:
        cached = self._by_fixture.get(fixture.name)
        return cached[1] if cached is not None and cached[0] == day else None

    def keep(self, fixture: Fixture, day: str, outcome: Outcome) -> Outcome:
        self._by_fixture[fixture.name] = (day, outcome)
        return outcome

    def of_day(self, fixture: Fixture, work: Path, day: str) -> Outcome:
        """The fixture's native outcome computed on ``day`` (computed now unless there is one)."""
        return self.cached(fixture, day) or self.keep(fixture, day, native_outcome(fixture, work))

    def of_day_beside_dagster(
        self, fixture: Fixture, work: Path, day: str
    ) -> tuple[Outcome, tuple[str | None, Outcome | None, list[str]]]:
        """The fixture's native outcome of ``day`` and Dagster's run (`dagster_outcome`) on copies of
        their own; when the native run is made now, both states are read by one process."""
        native = self.cached(fixture, day)
        if native is not None:
            return native, dagster_outcome(fixture, work)
        native_copy = native_run(fixture, work)
        failure, dagster_copy, stray = dagster_run(fixture, work)
        if dagster_copy is None:
            return self.keep(fixture, day, native_outcome_of(fixture, native_copy)), (failure, None, stray)
        native, dagster = collect_outcomes(fixture, native_copy, dagster_copy)
        return self.keep(fixture, day, checked_native(fixture, native)), (None, dagster, stray)


@pytest.fixture(scope="module")
def natives() -> NativeOutcomes:
    return NativeOutcomes()


def dagster_run(fixture: Fixture, work: Path) -> tuple[str | None, Path | None, list[str]]:
    """(failure, the copy Dagster ran on unless it failed, stray warehouse files written where
    Dagster was started). Each job through `dagster job execute`, then each again in this process."""
    from dagster import DagsterInstance

    copy = prepare_copy(fixture, work / "dagster")
    work_dir = work / "dagster-run"
    results = run_dagster(fixture, copy, work_dir, rounds=1)
    failed = failed_step(results, len(fixture.jobs))
    failure = None if failed is None else f"dagster job failed:\n{failed.describe()}"
    home = work_dir / "dagster_home"
    for job in fixture.jobs if failure is None else ():
        with started_like_the_cli(elsewhere_dir(work_dir), clean_env(DAGSTER_HOME=str(home))):
            with DagsterInstance.get() as instance:
                ok, output = execute_job_in_process(copy / "definitions.py", job, instance)
        if not ok:
            failure = f"dagster job {job} (second run, in-process) failed:\n{output[-6000:]}"
            break
    stray = [str(p) for p in duckdb_files(elsewhere_dir(work_dir))]
    if failure is not None:
        return failure, None, stray
    return None, copy, stray


def dagster_outcome(fixture: Fixture, work: Path) -> tuple[str | None, Outcome | None, list[str]]:
    """(failure, outcome, stray warehouse files written where Dagster was started)."""
    failure, copy, stray = dagster_run(fixture, work)
    return failure, None if copy is None else collect_outcome(fixture, copy), stray


@pytest.mark.timeout(3000)
@pytest.mark.parametrize("name", fixture_names())
def test_dagster_run_matches_native_sqlmesh(name: str, tmp_path: Path, natives: NativeOutcomes):
    fixture = load_fixture(PROJECTS_DIR / name)
    for attempt in (1, 2):
        work = tmp_path / f"attempt_{attempt}"
        day = utc_today()
        native, (failure, dagster, stray) = natives.of_day_beside_dagster(fixture, work, day)
        # Runs on either side of UTC midnight legitimately see different due intervals.
        if utc_today() == day:
            break

    problems = [f"warehouse file written in the directory Dagster was started from: {path}" for path in stray]
    if failure is not None:
        problems.append(failure)
    else:
        problems.extend(diff_outcomes(native, dagster))
    assert not problems, f"[{name}] dagster differs from native sqlmesh:\n" + "\n".join(problems)


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("name", ["marts"])
def test_native_runs_are_reproducible(name: str, tmp_path: Path, natives: NativeOutcomes):
    """The harness's own control: two native runs of a fixture compare equal.

    On the fixture with the most moving parts (lookback, signals with arguments, a weekly
    cron, two catalogs); the other fixtures' determinism is shown by their comparison with
    Dagster's run passing. The first is the native run the comparison with Dagster used (the
    same UTC day; each run on its own copy of the fixture), the second a new one."""
    fixture = load_fixture(PROJECTS_DIR / name)
    for attempt in (1, 2):
        day = utc_today()
        first = natives.of_day(fixture, tmp_path / f"a{attempt}", day)
        second = native_outcome(fixture, tmp_path / f"b{attempt}")
        if utc_today() == day:
            break
    diffs = diff_outcomes(first, second, other_name="native#2")
    assert not diffs, "\n".join(diffs)


# --- the harness's guards against a false pass ---------------------------------------------------


def _warehouse(path: Path, statements: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(path)) as con:
        for statement in statements:
            con.execute(statement)


BASE = [
    "CREATE SCHEMA shop",
    "CREATE TABLE shop.orders AS SELECT * FROM (VALUES (1, 'a', 2.5), (2, 'b', 3.0)) t(id, code, amount)",
    "CREATE VIEW shop.big AS SELECT * FROM shop.orders WHERE amount > 2.7",
    "CREATE SCHEMA sqlmesh",
    "CREATE TABLE sqlmesh._intervals AS SELECT now() AS created_ts",
]


def _state(intervals: tuple[tuple[str, str], ...]) -> dict[str, SnapshotIntervals]:
    return {'"db"."shop"."orders"': SnapshotIntervals("123", "FULL", intervals, ())}


def test_a_changed_row_is_detected(tmp_path: Path):
    _warehouse(tmp_path / "a" / "db.duckdb", BASE)
    _warehouse(tmp_path / "b" / "db.duckdb", [*BASE, "UPDATE shop.orders SET code = 'z' WHERE id = 1"])
    diffs = diff_outcomes(
        Outcome(warehouse_snapshot(tmp_path / "a"), {}), Outcome(warehouse_snapshot(tmp_path / "b"), {})
    )
    assert len(diffs) == 1 and diffs[0].startswith("table db.duckdb:db.shop.orders:"), diffs


def test_row_order_state_rows_and_equal_data_do_not_count(tmp_path: Path):
    _warehouse(tmp_path / "a" / "db.duckdb", BASE)
    _warehouse(
        tmp_path / "b" / "db.duckdb",
        [
            *BASE[:1],
            "CREATE TABLE shop.orders AS SELECT * FROM (VALUES (2, 'b', 3.0), (1, 'a', 2.5)) t(id, code, amount)",
            *BASE[2:],
        ],
    )
    a, b = warehouse_snapshot(tmp_path / "a"), warehouse_snapshot(tmp_path / "b")
    assert set(a) == {"db.duckdb:db.shop.orders", "db.duckdb:db.shop.big"}
    assert a["db.duckdb:db.shop.big"].row_count == 1
    assert diff_outcomes(Outcome(a, {}), Outcome(b, {})) == []


def test_types_missing_tables_and_misplaced_files_are_detected(tmp_path: Path):
    _warehouse(tmp_path / "a" / "p" / "db.duckdb", BASE)
    _warehouse(tmp_path / "b" / "p" / "db.duckdb", [*BASE[:2], "ALTER TABLE shop.orders ALTER amount TYPE DOUBLE"])
    _warehouse(tmp_path / "b" / "db.duckdb", BASE)
    diffs = diff_outcomes(
        Outcome(warehouse_snapshot(tmp_path / "a"), {}), Outcome(warehouse_snapshot(tmp_path / "b"), {})
    )
    text = "\n".join(diffs)
    assert "table p/db.duckdb:db.shop.orders:" in text and "DOUBLE" in text
    assert "table p/db.duckdb:db.shop.big: native=" in text and "dagster=<missing>" in text
    assert "table db.duckdb:db.shop.orders: native=<missing>" in text


def test_interval_differences_are_detected():
    full = (("2026-11-10 00:00", "2026-11-29 00:00"),)
    short = (("2026-11-10 00:00", "2026-11-28 00:00"),)
    diffs = diff_outcomes(Outcome({}, _state(full)), Outcome({}, _state(short)))
    assert diffs and '"db"."shop"."orders"' in diffs[0] and "2026-11-28" in diffs[0]
    assert diff_outcomes(Outcome({}, _state(full)), Outcome({}, {}))


def test_an_empty_warehouse_or_state_is_refused(tmp_path: Path):
    _warehouse(tmp_path / "db.duckdb", ["CREATE TABLE t (id INT)"])
    problems = vacuity_problems(Outcome(warehouse_snapshot(tmp_path), _state(())))
    assert len(problems) == 2, problems


def test_a_hung_command_is_killed_with_its_process_group(tmp_path: Path):
    pid_file = tmp_path / "child.pid"
    result = run_command(["bash", "-c", f"sleep 120 & echo $! > {pid_file}; wait"], tmp_path, os.environ, timeout=2)
    assert result.timed_out and not result.ok
    child = int(pid_file.read_text())
    # SIGKILL is asynchronous: the child may close its pipe a moment before it stops running.
    for _ in range(100):
        if not _alive(child):
            break
        time.sleep(0.1)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a killed zombie waiting for its new parent to reap it."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_only_duckdb_files_are_read_as_warehouses(tmp_path: Path):
    import sqlite3

    _warehouse(tmp_path / "warehouse.db", BASE)
    sqlite3.connect(tmp_path / "claims.db").execute("CREATE TABLE c (x INT)").connection.commit()
    assert duckdb_files(tmp_path) == [tmp_path / "warehouse.db"]
