"""Issue 27 on SQLMesh: what a run reports is what SQLMesh did, no more, no less.

Each test runs a Dagster job on a project `sqlmesh init` could have written (DuckDB, one
concurrent task), beside the real `sqlmesh` CLI on a copy of it, and reads what Dagster recorded.
Runs whose point is what they record run in the test's process (`run_in_process`: the run
`dagster job execute` starts, from another directory); a failing plan job and `dagster asset
materialize` go through the real `dagster` CLI, whose output and exit code they read
(tests/test_fidelity_sqlmesh.py runs `<project>_run` through the CLI on every fixture).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import duckdb
import pytest
from dagster import DagsterEventType, DagsterInstance, EventRecordsFilter
from fidelity.harness import (
    VENV_BIN,
    CommandResult,
    SnapshotIntervals,
    StateTarget,
    clean_env,
    read_states,
    run_command,
    warehouse_snapshot,
)
from in_process_runs import execute_job_in_process, started_like_the_cli
from projects.deployment import plan_without_backfill
from projects.sqlmesh_repo import JOB, JobRun, write_repository
from test_pause_models import MODELS as PAUSE_MODELS

from dagctl_dagster.execution.executor import RUN_SUMMARY_MESSAGE
from dagctl_dagster.names import ROW_COUNT_KEY, SQLMESH_DURATION_KEY, ExecutorSummary

A = TypeVar("A")
B = TypeVar("B")


def side_by_side(ours: Callable[[], A], native: Callable[[dict[str, str]], B]) -> tuple[A, B]:
    """The Dagster side and the native side at once: each on its own copy of the project (its
    own DuckDB warehouse and state), in its own processes, so neither sees the other.

    The native side gets its environment read here, first: the Dagster side runs in this
    process and replaces its environment meanwhile (``started_like_the_cli``), which another
    thread must not be reading."""
    env = clean_env()
    with ThreadPoolExecutor(1) as pool:
        theirs = pool.submit(native, env)
        return ours(), theirs.result()


def models_cli(repo: Path, home: Path, *args: str) -> tuple[int, str]:
    """`dagctl-dagster models ...` with the run's `$DAGSTER_HOME`: the console script's `main`,
    in this process (tests/test_pause_models.py runs the command itself); its code and stderr."""
    from dagctl_dagster.cli import main

    stderr = io.StringIO()
    with started_like_the_cli(Path.cwd(), {**os.environ, "DAGSTER_HOME": str(home)}):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(stderr):
            code = main(["models", *args, "--config", str(repo / ".dagctl" / "config.yaml")])
    return code, stderr.getvalue()


def run_in_process(repo: Path, home: Path, cwd: Path, job: str = JOB, run_config: dict | None = None) -> JobRun:
    """The run `run_job` starts (`dagster job execute -j <project>_run`, from ``cwd``, with
    ``home`` as `$DAGSTER_HOME`), or of another ``job``, in this process: its exit code (0 or 1)
    and log messages."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    cwd.mkdir(parents=True, exist_ok=True)
    env = {name: value for name, value in os.environ.items() if name != "MAX_CONCURRENT_MODELS"}
    with started_like_the_cli(cwd, {**env, "DAGSTER_HOME": str(home)}), DagsterInstance.get() as instance:
        ok, output = execute_job_in_process(repo / "definitions.py", job, instance, run_config=run_config)
    return JobRun(0 if ok else 1, output)


def both_states(ours: Path, native: Path) -> tuple[dict[str, SnapshotIntervals], dict[str, SnapshotIntervals]]:
    """The prod intervals of the Dagster side's project and of the native copy (as
    `state_intervals` reads each), read by one process."""
    mine, theirs = read_states(StateTarget(ours), StateTarget(native))
    return mine.intervals, theirs.intervals


def _events(home: Path, event_type: DagsterEventType) -> list:
    os.environ["DAGSTER_HOME"] = str(home)
    with DagsterInstance.get() as instance:
        return [r.event_log_entry for r in instance.get_event_records(EventRecordsFilter(event_type), limit=10_000)]


def _summary(home: Path) -> ExecutorSummary:
    """The newest run's summary."""
    for entry in _events(home, DagsterEventType.ENGINE_EVENT):
        if (entry.message or "").startswith(RUN_SUMMARY_MESSAGE):
            summary = ExecutorSummary.from_metadata(entry.dagster_event.engine_event_data.metadata)
            assert summary is not None
            return summary
    raise AssertionError("no run summary")


def _materializations(home: Path) -> dict[str, list[dict]]:
    """Each asset's materializations' metadata (raw values), oldest first."""
    found: dict[str, list[dict]] = {}
    for entry in reversed(_events(home, DagsterEventType.ASSET_MATERIALIZATION)):
        materialization = entry.dagster_event.event_specific_data.materialization
        metadata = {key: value.value for key, value in materialization.metadata.items()}
        found.setdefault(materialization.asset_key.to_user_string(), []).append(metadata)
    return found


METADATA_MODELS = {
    "numbers.sql": "MODEL (name demo.numbers, kind FULL);\nSELECT range AS id FROM range(200)\n",
    "evens.sql": "MODEL (name demo.evens, kind FULL);\nSELECT id FROM demo.numbers WHERE id % 2 = 0\n",
    "daily.sql": """
        MODEL (name demo.daily, kind INCREMENTAL_BY_TIME_RANGE (time_column ds), start '2026-11-20');
        SELECT id, @start_ds::DATE AS ds FROM demo.numbers WHERE id < 3
    """,
}


@pytest.mark.timeout(600)
def test_plan_evaluated_models_get_their_plan_time_and_rebuilt_tables_their_row_count(tmp_path: Path):
    repo = write_repository(tmp_path / "repo", METADATA_MODELS)
    home = tmp_path / "home"
    first = run_in_process(repo, home, tmp_path / "elsewhere")
    assert first.returncode == 0, first.output[-6000:]
    evaluated = _materializations(home)
    assert set(evaluated) == {"demo/numbers", "demo/evens", "demo/daily"}
    for key, [metadata] in evaluated.items():
        assert metadata["evaluated_by_plan"] is True
        # The time SQLMesh spent evaluating the model in the first plan, not a default of 0.
        assert metadata[SQLMESH_DURATION_KEY] > 0, (key, metadata)
    # FULL tables are rebuilt by each evaluation: their row count is known without counting.
    assert evaluated["demo/numbers"][0][ROW_COUNT_KEY] == 200
    assert evaluated["demo/evens"][0][ROW_COUNT_KEY] == 100
    # An incremental batch adds rows to a table holding others: no number rather than a wrong one.
    assert ROW_COUNT_KEY not in evaluated["demo/daily"][0]

    second = run_in_process(repo, home, tmp_path / "elsewhere")
    assert second.returncode == 0, second.output[-6000:]
    assert "snapshots, nothing due" in second.output
    assert "with 0 due batches" not in second.output


@pytest.mark.timeout(600)
def test_a_run_evaluating_a_full_model_reports_its_row_count(tmp_path: Path):
    repo = write_repository(tmp_path / "repo", METADATA_MODELS)
    plan_without_backfill(repo / "project")
    home = tmp_path / "home"
    result = run_in_process(repo, home, tmp_path / "elsewhere")
    assert result.returncode == 0, result.output[-6000:]
    assert "3 due batches in 3 snapshots" in result.output
    evaluated = _materializations(home)
    assert "evaluated_by_plan" not in evaluated["demo/numbers"][0]
    assert evaluated["demo/numbers"][0][ROW_COUNT_KEY] == 200
    assert evaluated["demo/evens"][0][ROW_COUNT_KEY] == 100
    assert ROW_COUNT_KEY not in evaluated["demo/daily"][0]


# The no-op "Materialize all" keeping every audit's latest status: tests/test_freshness.py,
# on the webserver and runs its freshness test reads.


BOOM = "MODEL (name retail.boom, kind FULL);\nSELECT error('kaboom') AS x FROM retail.stores\n"
FAILING_PLAN_MODELS = {
    "stores.sql": "MODEL (name retail.stores, kind FULL);\nSELECT range AS id FROM range(4)\n",
    "boom.sql": BOOM,
    "after_boom.sql": "MODEL (name retail.after_boom, kind FULL);\nSELECT * FROM retail.boom\n",
    "sales.sql": "MODEL (name retail.sales, kind FULL);\nSELECT id, id * 10 AS amount FROM retail.stores\n",
    "other.sql": "MODEL (name retail.other, kind FULL);\nSELECT 2 AS id\n",
}


def _native_plan(project: Path, env: dict[str, str]) -> CommandResult:
    return run_command([str(VENV_BIN / "sqlmesh"), "plan", "--auto-apply", "--no-prompts"], project, env)


def _step_messages(home: Path, event_type: DagsterEventType) -> dict[str, str]:
    return {e.step_key: e.dagster_event.message or "" for e in _events(home, event_type) if e.step_key}


@pytest.mark.timeout(900)
def test_a_failed_first_plan_fails_the_model_it_failed_on_and_says_the_rest_is_not_deployed(tmp_path: Path):
    """Then, fixed and deployed, the model broken again: the plan job that fails on it names it
    (the deployed project a plan job's failure needs is the one this scenario ends with)."""
    repo = write_repository(tmp_path / "repo", FAILING_PLAN_MODELS)
    native = tmp_path / "native"
    shutil.copytree(repo / "project", native)
    home = tmp_path / "home"

    run, native_plan = side_by_side(
        lambda: run_in_process(repo, home, tmp_path / "elsewhere"), lambda env: _native_plan(native, env)
    )

    assert native_plan.returncode != 0 and "Plan application failed" in native_plan.output
    assert run.returncode != 0
    # What SQLMesh left behind is what `sqlmesh plan` leaves: the tables of the models that
    # succeeded, kept for the next plan; no view, as nothing was promoted.
    warehouse = warehouse_snapshot(repo / "project")
    assert warehouse == warehouse_snapshot(native)
    assert not [name for name in warehouse if ".retail." in name]
    assert len([name for name in warehouse if ".sqlmesh__retail." in name]) == 3  # stores, sales, other
    ours, theirs = both_states(repo / "project", native)
    assert ours == theirs == {}

    # The step of the model the plan failed on fails with that model's error; nothing else fails.
    failures = _step_messages(home, DagsterEventType.STEP_FAILURE)
    assert set(failures) == {"proj__retail__boom"}, failures
    [failure] = [e for e in _events(home, DagsterEventType.STEP_FAILURE)]
    assert "kaboom" in failure.dagster_event.event_specific_data.error.message
    assert "Steps failed: ['proj__retail__boom']" in run.output
    # The models the failure left undeployed say so, and are no materialization.
    skipped = {e.step_key for e in _events(home, DagsterEventType.STEP_SKIPPED)}
    assert skipped == {"proj__retail__stores", "proj__retail__sales", "proj__retail__other"}
    notes = [e.message or "" for e in _events(home, DagsterEventType.ENGINE_EVENT)]
    for model in ("retail.stores", "retail.sales", "retail.other"):
        assert any(
            f"SQLMesh model {model} not deployed: the first plan of environment 'prod' failed on retail.boom" in n
            for n in notes
        ), model
    assert _materializations(home) == {}
    # Only what did fail is said to block: after_boom reads boom, and nothing names stores.
    blocked = [n for n in notes if n.startswith("Blocked ")]
    assert blocked == ["Blocked retail/after_boom: upstream retail/boom failed; not executed in this run."]
    summary = _summary(home)
    assert (summary.failed, summary.blocked, summary.not_run_not_deployed, summary.executed) == (1, 1, 3, 0)

    # Fixed, the next first plan reuses the kept tables, as the next `sqlmesh plan` does.
    for project in (repo / "project", native):
        (project / "models" / "boom.sql").write_text("MODEL (name retail.boom, kind FULL);\nSELECT 1 AS x\n")
    fixed, native_fixed = side_by_side(
        lambda: run_in_process(repo, home, tmp_path / "elsewhere"), lambda env: _native_plan(native, env)
    )
    assert native_fixed.returncode == 0
    assert fixed.returncode == 0, fixed.output[-6000:]
    assert warehouse_snapshot(repo / "project") == warehouse_snapshot(native)
    ours, theirs = both_states(repo / "project", native)
    assert ours == theirs
    materialized = _materializations(home)
    assert set(materialized) == {f"retail/{m}" for m in ("stores", "boom", "after_boom", "sales", "other")}
    # stores was evaluated by the failed plan, and is deployed now: new in the environment,
    # though this run did not evaluate it (so it has no duration of this run).
    [stores] = materialized["retail/stores"]
    assert stores["deployed_by_plan"] is True and "evaluated_by_plan" not in stores
    assert SQLMESH_DURATION_KEY not in stores and stores[ROW_COUNT_KEY] == 4
    [boom] = materialized["retail/boom"]
    assert boom["evaluated_by_plan"] is True and "deployed_by_plan" not in boom

    # A plan job that fails names the model it failed on.
    (repo / "project" / "models" / "boom.sql").write_text(BOOM)
    planned = _plan_job(repo, home, tmp_path / "elsewhere")
    assert not planned.ok
    assert "the plan of environment 'prod' failed on retail.boom: " in planned.output and "kaboom" in planned.output


@pytest.mark.timeout(600)
def test_a_failed_first_plan_on_a_model_outside_the_selection_fails_the_selected_steps(tmp_path: Path):
    """No step of the run can carry the model's failure, so the models left undeployed fail
    (not run): the run is not green."""
    repo = write_repository(tmp_path / "repo", FAILING_PLAN_MODELS)
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    result = run_command(
        [
            str(VENV_BIN / "dagster"),
            "asset",
            "materialize",
            "-f",
            str(repo / "definitions.py"),
            "--select",
            "retail/stores,retail/other",
        ],
        tmp_path,
        {**clean_env(), "DAGSTER_HOME": str(home)},
    )
    assert result.returncode != 0, result.output[-4000:]
    failures = _step_messages(home, DagsterEventType.STEP_FAILURE)
    assert set(failures) == {"proj__retail__stores", "proj__retail__other"}
    summary = _summary(home)
    assert (summary.failed, summary.not_run_not_deployed) == (0, 2)
    assert "SQLMesh model retail.other not deployed: the first plan of environment 'prod' failed on retail.boom" in (
        result.output
    )


def _native(project: Path, *args: str, env: dict[str, str] | None = None) -> CommandResult:
    result = run_command([str(VENV_BIN / "sqlmesh"), *args], project, clean_env() if env is None else env)
    assert result.ok, result.describe()
    return result


@pytest.mark.timeout(900)
def test_a_model_paused_before_the_first_run_is_left_out_of_the_first_plan_until_resumed(tmp_path: Path):
    repo = write_repository(tmp_path / "repo", PAUSE_MODELS)
    native = tmp_path / "native"
    shutil.copytree(repo / "project", native)
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")

    def pause_then_run() -> JobRun:
        code, stderr = models_cli(
            repo, home, "pause", "--project", "proj", "demo.paused", "--reason", "INC-9", "--by", "bo"
        )
        assert code == 0, stderr
        return run_in_process(repo, home, tmp_path / "elsewhere")

    def natively(env: dict[str, str]) -> None:
        # Natively: the plan without the paused model and its downstream, then one that adds them
        # unevaluated, as the run's first plan does.
        _native(
            native, "plan", "--auto-apply", "--no-prompts", "--skip-tests", "--select-model", "^(demo.paused+)", env=env
        )
        _native(native, "plan", "--auto-apply", "--no-prompts", "--skip-tests", "--skip-backfill", "--no-gaps", env=env)

    first, _ = side_by_side(pause_then_run, natively)
    assert first.returncode == 0, first.output[-6000:]
    assert set(_materializations(home)) == {"demo/source", "demo/independent"}
    assert "It left out the paused demo.paused and downstream demo.after_paused" in first.output
    assert "demo/paused is paused by bo since" in first.output
    assert warehouse_snapshot(repo / "project") == warehouse_snapshot(native)
    state, native_state = both_states(repo / "project", native)
    assert state == native_state
    assert not state['"db"."demo"."paused"'].intervals and not state['"db"."demo"."after_paused"'].intervals
    assert state['"db"."demo"."source"'].intervals

    def resume_then_run() -> JobRun:
        assert models_cli(repo, home, "resume", "--project", "proj", "demo.paused")[0] == 0
        return run_in_process(repo, home, tmp_path / "elsewhere")

    second, _ = side_by_side(resume_then_run, lambda env: _native(native, "run", env=env))

    assert second.returncode == 0, second.output[-6000:]
    materialized = _materializations(home)
    assert set(materialized) == {"demo/source", "demo/independent", "demo/paused", "demo/after_paused"}
    assert "evaluated_by_plan" not in materialized["demo/paused"][0]  # the run evaluated it
    assert warehouse_snapshot(repo / "project") == warehouse_snapshot(native)
    ours, theirs = both_states(repo / "project", native)
    assert ours == theirs


def _plan_job(repo: Path, home: Path, cwd: Path) -> CommandResult:
    config = cwd / "plan.yaml"
    cwd.mkdir(parents=True, exist_ok=True)
    config.write_text("ops:\n  proj_plan_op:\n    config:\n      auto_apply: true\n")
    return run_command(
        [str(VENV_BIN / "dagster"), "job", "execute", "-f", str(repo / "definitions.py"), "-j", "proj_plan"]
        + ["-c", str(config)],
        cwd,
        {**clean_env(), "DAGSTER_HOME": str(home)},
    )


def _plan_job_in_process(repo: Path, home: Path, cwd: Path) -> JobRun:
    """`_plan_job`'s run, in this process (for what it records, not what the CLI prints)."""
    return run_in_process(repo, home, cwd, "proj_plan", {"ops": {"proj_plan_op": {"config": {"auto_apply": True}}}})


def _plan_output(home: Path) -> dict:
    [output] = [e for e in _events(home, DagsterEventType.STEP_OUTPUT) if e.step_key == "proj_plan_op"][:1]
    return {k: v.value for k, v in output.dagster_event.event_specific_data.metadata.items()}


@pytest.mark.timeout(900)
def test_the_plan_job_leaves_paused_models_as_deployed_or_says_it_could_not(tmp_path: Path):
    repo = write_repository(tmp_path / "repo", PAUSE_MODELS)
    native = tmp_path / "native"
    shutil.copytree(repo / "project", native)
    home = tmp_path / "home"

    def run_then_pause() -> None:
        assert run_in_process(repo, home, tmp_path / "elsewhere").returncode == 0
        assert models_cli(repo, home, "pause", "--project", "proj", "demo.paused", "--reason", "INC-3")[0] == 0

    side_by_side(run_then_pause, lambda env: _native(native, "plan", "--auto-apply", "--no-prompts", env=env))

    # The paused model edited, beside an edit elsewhere: the plan leaves it as deployed.
    for project in (repo / "project", native):
        (project / "models" / "paused.sql").write_text("MODEL (name demo.paused, kind FULL);\nSELECT 0 AS id\n")
        (project / "models" / "independent.sql").write_text(
            "MODEL (name demo.independent, kind FULL);\nSELECT id + 1 AS id FROM demo.source\n"
        )
    held, _ = side_by_side(
        lambda: _plan_job_in_process(repo, home, tmp_path / "elsewhere"),
        lambda env: _native(
            native, "plan", "--auto-apply", "--no-prompts", "--select-model", "^(demo.paused+)", env=env
        ),
    )

    assert held.returncode == 0, held.output[-6000:]
    assert _plan_output(home)["held_out_paused"] == ["demo.after_paused", "demo.paused"]
    assert warehouse_snapshot(repo / "project") == warehouse_snapshot(native)
    ours, theirs = both_states(repo / "project", native)
    assert ours == theirs
    with duckdb.connect(str(repo / "project" / "db.duckdb"), read_only=True) as con:
        assert con.sql("select count(*) from demo.paused").fetchone() == (5,)  # as deployed before
        assert con.sql("select min(id) from demo.independent").fetchone() == (1,)

    # A breaking change upstream of it: SQLMesh cannot keep the paused model as deployed (its
    # new version must be built to promote the change), so the plan says it evaluates it.
    for project in (repo / "project", native):
        (project / "models" / "source.sql").write_text(
            "MODEL (name demo.source, kind FULL);\nSELECT range AS id, 1 AS one FROM range(7)\n"
        )
    evaluated, _ = side_by_side(
        lambda: _plan_job_in_process(repo, home, tmp_path / "elsewhere"),
        lambda env: _native(native, "plan", "--auto-apply", "--no-prompts", env=env),
    )

    assert evaluated.returncode == 0, evaluated.output[-6000:]
    output = _plan_output(home)
    assert output["held_out_paused"] == [] and output["evaluated_despite_pause"] == ["demo.after_paused", "demo.paused"]
    [paused] = _materializations(home)["demo/paused"][-1:]
    assert "evaluated_despite_pause" in paused and paused["evaluated_by_plan"] is True
    assert warehouse_snapshot(repo / "project") == warehouse_snapshot(native)
    ours, theirs = both_states(repo / "project", native)
    assert ours == theirs


# A plan job that fails names the model it failed on: the end of
# test_a_failed_first_plan_fails_the_model_it_failed_on_and_says_the_rest_is_not_deployed.
