"""Issue 13's failure modes, each through the real `dagster` CLI on a default-settings project.

Every project here is what `sqlmesh init` writes: a DuckDB gateway with a relative
`database: db.duckdb` and SQLMesh's default of one concurrent task. Runs start from a
directory other than the project's.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, EventRecordsFilter
from projects.deployment import plan_without_backfill
from projects.sqlmesh_repo import JobRun, run_job, start_job, wide_models, write_repository
from waiting import wait_for


def _events(home: Path, event_type: DagsterEventType) -> list:
    os.environ["DAGSTER_HOME"] = str(home)
    with DagsterInstance.get() as instance:
        return [r.event_log_entry for r in instance.get_event_records(EventRecordsFilter(event_type), limit=10_000)]


def _materialized(home: Path) -> set[str]:
    return {e.dagster_event.asset_key.to_user_string() for e in _events(home, DagsterEventType.ASSET_MATERIALIZATION)}


def _summary(home: Path) -> dict[str, int]:
    [summary] = [
        e for e in _events(home, DagsterEventType.ENGINE_EVENT) if (e.message or "").startswith("dagctl run summary")
    ][:1] or [None]
    assert summary is not None, "no run summary"
    return {k: v.value for k, v in summary.dagster_event.engine_event_data.metadata.items()}


WIDE = 12
RELATIVE_PATH_MODELS = {
    # A query's `read_csv('data/…')` and a Python model's `open('data/…')`, relative to the project.
    "people.sql": "MODEL (name demo.people, kind FULL);\nSELECT * FROM read_csv('data/people.csv')\n",
    "greeting.py": """
        import typing as t

        import pandas as pd
        from sqlmesh import ExecutionContext, model


        @model("demo.greeting", kind="FULL", columns={"greeting": "text"})
        def execute(context: ExecutionContext, **kwargs: t.Any) -> pd.DataFrame:
            with open("data/greeting.txt") as handle:
                return pd.DataFrame({"greeting": [handle.read().strip()]})
    """,
}
FIRST_RUN_ASSETS = {"demo/source", *(f"demo/m{i:02d}" for i in range(WIDE)), "demo/people", "demo/greeting"}


@dataclass(frozen=True)
class ThreeRuns:
    """One default-settings project's job run three times from another directory, with what
    each test reads recorded right after the run it is about."""

    elsewhere: Path
    first: JobRun  # allowed five threads (MAX_CONCURRENT_MODELS=5)
    first_counts: dict[str, int]  # each fan-out model's row count after the first run
    first_greeting: str
    first_people: int
    first_materialized: set[str]
    first_materializations: int
    second: JobRun  # nothing changed: nothing due
    second_materializations: int
    third: JobRun  # a model added to the project without a plan
    third_materialized: set[str]
    third_summary: dict[str, int]


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory: pytest.TempPathFactory) -> ThreeRuns:
    """The three runs the first four tests read: each used to build the same kind of project and
    run it once or twice of its own."""
    tmp_path = tmp_path_factory.mktemp("three_runs")
    repo = write_repository(tmp_path / "repo", {**wide_models(WIDE), **RELATIVE_PATH_MODELS})
    data = repo / "project" / "data"
    data.mkdir()
    (data / "people.csv").write_text("id,name\n1,Ada\n2,Grace\n")
    (data / "greeting.txt").write_text("hello\n")
    home = tmp_path / "home"
    elsewhere = tmp_path / "elsewhere"

    first = run_job(repo, home, elsewhere, MAX_CONCURRENT_MODELS="5")
    assert first.returncode == 0, first.output[-6000:]
    with duckdb.connect(str(repo / "project" / "db.duckdb"), read_only=True) as con:
        counts = {f"m{i:02d}": con.sql(f"select count(*) from demo.m{i:02d}").fetchone()[0] for i in range(WIDE)}
        people = con.sql("select count(*) from demo.people").fetchone()[0]
        greeting = con.sql("select greeting from demo.greeting").fetchone()[0]
    first_materialized = _materialized(home)
    first_materializations = len(_events(home, DagsterEventType.ASSET_MATERIALIZATION))

    second = run_job(repo, home, elsewhere)
    second_materializations = len(_events(home, DagsterEventType.ASSET_MATERIALIZATION))

    (repo / "project" / "models" / "late.sql").write_text("MODEL (name demo.late, kind FULL);\nSELECT 1 AS x\n")
    third = run_job(repo, home, elsewhere)
    return ThreeRuns(
        elsewhere=elsewhere,
        first=first,
        first_counts=counts,
        first_greeting=greeting,
        first_people=people,
        first_materialized=first_materialized,
        first_materializations=first_materializations,
        second=second,
        second_materializations=second_materializations,
        third=third,
        third_materialized=_materialized(home),
        third_summary=_summary(home),
    )


@pytest.mark.timeout(900)
def test_the_one_connection_gateway_completes_with_five_threads_allowed(three_runs: ThreeRuns):
    result = three_runs.first
    assert result.returncode == 0, result.output[-6000:]
    assert "RUN_SUCCESS" in result.output
    assert "allows one concurrent task" in result.output  # the log says why and what to change
    assert "was removed" not in result.output
    # The warehouse is the project's own `db.duckdb`, as `sqlmesh run` in the project writes it.
    assert not (three_runs.elsewhere / "db.duckdb").exists()
    assert three_runs.first_counts == {f"m{index:02d}": 200 for index in range(WIDE)}
    assert three_runs.first_materialized == FIRST_RUN_ASSETS


@pytest.mark.timeout(900)
def test_relative_paths_in_project_code_resolve_in_the_project_directory(three_runs: ThreeRuns):
    """A query's `read_csv('data/…')` and a Python model's `open('data/…')` find the project's
    files, as when `sqlmesh run` runs in the project's directory (the run started elsewhere)."""
    assert three_runs.first.returncode == 0, three_runs.first.output[-6000:]
    assert three_runs.first_people == 2
    assert three_runs.first_greeting == "hello"


@pytest.mark.timeout(900)
def test_a_second_run_with_nothing_due_records_no_materialization(three_runs: ThreeRuns):
    second = three_runs.second
    assert second.returncode == 0, second.output[-6000:]
    assert three_runs.second_materializations == three_runs.first_materializations == len(FIRST_RUN_ASSETS)
    assert "nothing due" in second.output


@pytest.mark.timeout(900)
def test_a_model_not_in_the_environment_is_no_materialization_and_the_run_is_not_green(three_runs: ThreeRuns):
    result = three_runs.third
    assert result.returncode != 0
    assert "RUN_FAILURE" in result.output
    assert "is not in environment 'prod'" in result.output and "proj_plan" in result.output
    assert "demo/late" not in three_runs.third_materialized
    summary = three_runs.third_summary
    assert summary["not_run_not_in_environment"] == 1
    assert summary["failed"] == 0


FAILING_TEST = """
test_doubles:
  model: demo.doubled
  inputs:
    demo.numbers:
      rows:
        - n: 1
  outputs:
    query:
      rows:
        - n2: 3
"""


@pytest.mark.timeout(600)
def test_a_failing_unit_test_stops_the_first_run_and_deploys_nothing(tmp_path: Path):
    models = {
        "numbers.sql": "MODEL (name demo.numbers, kind FULL);\nSELECT 1 AS n\n",
        "doubled.sql": "MODEL (name demo.doubled, kind FULL);\nSELECT n * 2 AS n2 FROM demo.numbers\n",
    }
    repo = write_repository(tmp_path / "repo", models, tests={"test_doubled.yaml": FAILING_TEST})
    home = tmp_path / "home"
    result = run_job(repo, home, tmp_path / "elsewhere")
    assert result.returncode != 0
    assert "RUN_FAILURE" in result.output
    assert "test_doubles" in result.output and "unit test" in result.output
    assert _materialized(home) == set()
    with duckdb.connect(str(repo / "project" / "db.duckdb"), read_only=True) as con:
        environments = con.sql("select name from sqlmesh._environments").fetchall()
        tables = con.sql("select table_schema, table_name from information_schema.tables").fetchall()
    assert environments == []
    assert not [t for t in tables if t[0] != "sqlmesh"]


BLOCKING_MODEL = """
MODEL (name demo.slow, kind FULL);
SET threads = 1;
COPY (SELECT 1 AS started) TO '{marker}';
SELECT count(*) AS n FROM range(1000000000000) AS a(x) WHERE x % 7 = 3
"""


@pytest.mark.timeout(600)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("phase", ["first_plan", "model_step"])
def test_a_run_blocked_in_the_engine_stops_on_a_signal(tmp_path: Path, signum: int, phase: str):
    """The query never ends by itself: the run must cancel it, whether the first plan's
    backfill or a model step is running it, and says the step or plan stopped. The model's pre-statements keep the query on one
    DuckDB thread (the cancel is the same, the burnt CPU half) and leave a marker just before it
    starts, so the signal comes a second into the query instead of after a guessed 3 s."""
    marker = tmp_path / "query_started.csv"
    repo = write_repository(tmp_path / "repo", {"slow.sql": BLOCKING_MODEL.format(marker=marker)})
    if phase == "model_step":
        plan_without_backfill(repo / "project")
        marker.unlink(missing_ok=True)  # creating the table ran the pre-statements
    home = tmp_path / "home"
    process = start_job(repo, home, tmp_path / "elsewhere")
    try:
        if phase == "model_step":
            _wait_for_event(home, process, "STEP_START", step_key="proj__demo__slow")
        else:
            _wait_for_event(home, process, "ENGINE_EVENT")  # claims taken: the plan starts next
        # The model's pre-statements ran: its query is next, in the same session.
        wait_for(
            marker.exists,
            "the blocking query to start",
            timeout=180,
            every=0.1,
            alive=lambda: f"the run exited ({process.returncode})" if process.poll() is not None else None,
            explain=lambda: process.stdout.read()[-4000:],
        )
        time.sleep(1)  # well inside DuckDB's query by now
        stopped_at = time.monotonic()
        os.killpg(process.pid, signum)
        output, _ = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert time.monotonic() - stopped_at < 90
    os.environ["DAGSTER_HOME"] = str(home)
    with DagsterInstance.get() as instance:
        [run] = instance.get_runs()
        terminated = [
            e.message for e in instance.all_logs(run.run_id) if (e.message or "").startswith("Run terminated")
        ]
    assert run.status in (DagsterRunStatus.CANCELED, DagsterRunStatus.FAILURE), output[-4000:]
    # The query was cancelled, not waited out: the step (or the first plan) stopped in time.
    running = 1 if phase == "model_step" else 0
    assert terminated == [
        f"Run terminated: no new step started; {running} running step(s) were asked to stop and stopped; claims released."
    ]
    claims = sqlite3.connect(home / "dagctl_claims.sqlite").execute("select count(*) from dagctl_claims").fetchone()
    assert claims == (0,)


def _wait_for_event(home: Path, process, event_type: str, step_key: str | None = None, timeout: float = 180) -> None:
    """Polls the run's SQLite event log directly: opening a second instance while the run
    worker creates its storage would race its schema migration."""

    def recorded() -> bool:
        for run_db in (home / "history" / "runs").glob("*.db"):
            try:
                with sqlite3.connect(f"file:{run_db}?mode=ro", uri=True) as con:
                    query = "select count(*) from event_logs where dagster_event_type = ?"
                    args: tuple[str, ...] = (event_type,)
                    if step_key:
                        query, args = query + " and step_key = ?", (event_type, step_key)
                    if con.execute(query, args).fetchone()[0]:
                        return True
            except sqlite3.Error:
                continue
        return False

    wait_for(
        recorded,
        f"{event_type} {step_key or ''}",
        timeout=timeout,
        every=0.5,
        alive=lambda: f"the run exited ({process.returncode})" if process.poll() is not None else None,
        explain=lambda: process.stdout.read()[-4000:],
    )
