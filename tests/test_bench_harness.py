"""The benchmark harness: generated projects are valid SQLMesh, checks catch wrong results, report math."""

from __future__ import annotations

import argparse
import datetime as dt
import sys

import pytest

from benchmarks import contenders as c
from benchmarks.cli import add_arguments, options_from_args
from benchmarks.generate import ROWS, generate_repository, model_table_names, upstream_tables
from benchmarks.report import (
    RESULTS_BEGIN,
    RESULTS_END,
    Row,
    Series,
    Target,
    markdown_table,
    ratio,
    ratio_row,
    results_section,
    write_results,
)


# -- generator ---------------------------------------------------------------------------


def test_layered_dag_shape():
    graph = upstream_tables(7, 3)

    assert list(graph) == model_table_names(7, 3)
    assert graph["m_000_000"] == () and graph["m_000_002"] == ()
    assert graph["m_001_000"] == ("m_000_000", "m_000_001")
    assert graph["m_001_002"] == ("m_000_002", "m_000_000")  # wraps around the layer
    assert graph["m_002_000"] == ("m_001_000", "m_001_001")
    assert len(graph) == 7


def test_bad_shape_names_the_option():
    with pytest.raises(ValueError, match="--width must be at least 2"):
        upstream_tables(10, 1)
    with pytest.raises(ValueError, match=r"--models \(3\) must be at least --width \(5\)"):
        model_table_names(3, 5)


@pytest.mark.timeout(120)
def test_generated_repository_is_a_valid_sqlmesh_project_and_dagctl_config(tmp_path):
    from sqlmesh import Context

    from dagctl_dagster.config import load_config

    repo = generate_repository(tmp_path / "repo", models=8, width=4)

    context = Context(paths=[str(repo.project_dir)])
    try:
        models = {fqn.replace('"', ""): model for fqn, model in context.models.items()}
        connection = context.config.get_gateway("local").connection
    finally:
        context.close()
    assert len(models) == 8
    joined = models["warehouse.bench.m_001_003"]
    assert {d.replace('"', "") for d in joined.depends_on} == {"warehouse.bench.m_000_003", "warehouse.bench.m_000_000"}
    assert joined.kind.is_full
    assert connection.concurrent_tasks == 5
    assert connection.database == str(repo.warehouse)

    loaded = load_config(repo.config_path)
    (project,) = loaded.projects
    assert (project.name, project.framework, project.gateway) == ("bench", "sqlmesh", "local")
    assert loaded.project_dir(project) == repo.project_dir
    assert load_config(repo.postgres_config_path).projects[0].gateway == "postgres"
    assert "load_definitions" in repo.definitions.read_text()
    assert "multiprocess_executor" in repo.definitions_multiprocess.read_text()
    assert "definitions.py" in (repo.root / "workspace.yaml").read_text()


@pytest.mark.timeout(300)
def test_native_contender_is_checked_against_the_warehouse(tmp_path):
    repo = generate_repository(tmp_path / "repo", models=6, width=3)
    state = c.DuckDBState(repo)
    state.prepare()

    # Planned but not run: the tables exist and are empty, so the check refuses the result.
    with pytest.raises(c.ContenderFailed, match=f"6 with a row count other than {ROWS}"):
        c.verify_duckdb_warehouse(repo, label="native")

    result = c.run_native_sqlmesh(repo, timeout_s=240)
    c.verify_duckdb_warehouse(repo, label="native")
    assert result.seconds > 0
    assert "Run finished for environment 'prod'" in result.output

    # Each repetition starts again from the planned, empty state.
    state.restore()
    with pytest.raises(c.ContenderFailed, match="row count other than"):
        c.verify_duckdb_warehouse(repo, label="native")


def test_row_count_check_names_missing_and_wrong_models():
    c.check_row_counts({"a": ROWS, "b": ROWS}, ["a", "b"], label="x")
    with pytest.raises(c.ContenderFailed, match=r"x: wrong result: 1 model tables missing, 1 with a row count other than 1000 \(b=3\)"):
        c.check_row_counts({"a": ROWS, "b": 3}, ["a", "b", "c"], label="x")


# -- process measurement -----------------------------------------------------------------


@pytest.mark.timeout(60)
def test_run_timed_reports_peak_rss_of_the_child():
    allocate = "data = bytearray(300 * 1024 * 1024); data[::4096] = b'x' * len(data[::4096]); print('done')"
    result = c.run_timed([sys.executable, "-c", allocate], label="alloc")

    assert result.peak_rss_bytes >= 300 * 1024 * 1024
    assert result.last_line == "done"


@pytest.mark.timeout(60)
def test_run_timed_failure_and_timeout_raise_with_the_output():
    with pytest.raises(c.ContenderFailed, match=r"(?s)boom: .* exited with 3:\nlast words"):
        c.run_timed([sys.executable, "-c", "import sys; print('last words'); sys.exit(3)"], label="boom")
    with pytest.raises(c.ContenderFailed, match="slow: did not finish within 1s; killed"):
        c.run_timed([sys.executable, "-c", "import time; time.sleep(30)"], label="slow", timeout_s=1)


@pytest.mark.timeout(60)
def test_interrupting_the_benchmark_kills_the_running_contender(tmp_path):
    """Ctrl-C during a contender must not leave it running (it leads its own session)."""
    import os
    import signal

    pid_file = tmp_path / "pid"
    sleeper = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 2.0)
    try:
        with pytest.raises(KeyboardInterrupt):
            c.run_timed([sys.executable, "-c", sleeper], label="sleeper")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left sleeping
        os.kill(pid, 0)


# -- report math -------------------------------------------------------------------------


def test_median_ratio_and_targets():
    native = Series("native", 100, "s", [2.0, 9.0, 2.2])
    claim = Series("claim", 100, "s", [3.3, 3.0, 30.0])

    assert native.median == 2.2
    assert ratio(claim, native) == pytest.approx(3.3 / 2.2)
    row = ratio_row("claim / native", claim, native, Target("<=", 1.5))
    assert row.value == pytest.approx(1.5)
    assert row.result == "pass"
    assert ratio_row("claim / native", claim, Series("n", 100, "s", [2.1]), Target("<=", 1.5)).result == "miss"
    assert Target(">=", 10).met(10.0) and not Target(">=", 10).met(9.99)
    assert Row("info", 1, 1.0, "s", "").result == ""
    with pytest.raises(ValueError, match="'<=' or '>='"):
        Target("<", 1)
    with pytest.raises(ValueError, match="no samples for empty"):
        Series("empty", 1, "s").median


def test_markdown_table_shows_value_target_and_result():
    rows = [
        ratio_row("claim / native", Series("claim", 100, "s", [3.0]), Series("native", 100, "s", [2.0]), Target("<=", 1.5)),
        Row("peak RSS", 1000, 1.8, "GiB", "rss", Target("<=", 1.5, "GiB")),
    ]
    lines = markdown_table(rows).splitlines()

    assert lines[0].startswith("| Measure | Models | Value | Target | Result |")
    assert lines[2].startswith("| claim / native | 100 | 1.50× | ≤ 1.50 | pass | claim: median 3.00 s (3.00); native: median 2.00 s (2.00) |")
    assert lines[3].startswith("| peak RSS | 1000 | 1.80 GiB | ≤ 1.50 GiB | miss |")


def test_write_results_replaces_only_the_generated_section(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text(f"# Results\n\nProse stays.\n\n{RESULTS_BEGIN}\nold table\n{RESULTS_END}\n\nMore prose.\n")
    row = Row("peak RSS", 1000, 0.5, "GiB", "rss", Target("<=", 1.5, "GiB"))
    section = results_section([row], command="dagctl-dagster bench --quick", notes=["a note"], now=dt.datetime(2026, 11, 21, 12, 0))

    write_results(path, section)
    text = path.read_text()

    assert "old table" not in text
    assert text.startswith("# Results\n\nProse stays.\n\n" + RESULTS_BEGIN)
    assert text.rstrip().endswith("More prose.")
    assert "Measured 2026-11-21 12:00 UTC" in text and "dagctl-dagster bench --quick" in text
    assert "nproc " in text and "sqlmesh 0.236.4" in text
    assert "| peak RSS | 1000 | 0.50 GiB | ≤ 1.50 GiB | pass |" in text and "- a note" in text


# -- command line ------------------------------------------------------------------------


def _parse(*argv: str):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return options_from_args(parser.parse_args(list(argv)))


def test_command_line_options():
    options = _parse("--models", "100,500", "--width", "10", "--repeats", "3")
    assert (options.models, options.width, options.repeats, options.load_models) == ([100, 500], 10, 3, 1000)

    quick = _parse("--quick", "--skip", "claims")
    assert (quick.models, quick.repeats, quick.rss_models, quick.skip) == ([20], 1, 20, {"claims"})

    with pytest.raises(SystemExit, match="--skip: unknown section"):
        _parse("--skip", "nothing")
    with pytest.raises(SystemExit, match="--models: expected comma-separated integers"):
        _parse("--models", "a,b")


def test_dagctl_dagster_bench_is_registered():
    from dagctl_dagster.cli import build_parser

    args = build_parser().parse_args(["bench", "--quick"])
    assert args.quick is True and args.handler.__module__ == "dagctl_dagster.bench_cli"


def test_contenders_alternate_who_goes_first_and_reset_before_each():
    from benchmarks.harness import _alternate

    calls: list[str] = []
    a, b = Series("a", 10, "s"), Series("b", 10, "s")
    _alternate(
        [(a, lambda: calls.append("a") or 1.0), (b, lambda: calls.append("b") or 2.0)],
        lambda: calls.append("reset"),
        3,
        lambda message: None,
    )

    assert calls == ["reset", "a", "reset", "b", "reset", "b", "reset", "a", "reset", "a", "reset", "b"]
    assert (a.samples, b.samples) == ([1.0, 1.0, 1.0], [2.0, 2.0, 2.0])
