"""The benchmark harness: generated projects are valid SQLMesh, checks catch wrong results, report math."""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
from dataclasses import dataclass

import pytest

from benchmarks import contenders as c
from benchmarks.cli import add_arguments, options_from_args
from benchmarks.generate import (
    FLOOR_JOB_NAME,
    INCREMENTAL_INTERVALS,
    JOB_NAME,
    ROWS,
    GeneratedRepository,
    Shape,
    expected_row_counts,
    generate_repository,
    model_kind,
    model_table_names,
    upstream_tables,
)
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
    assert connection.concurrent_tasks == 1  # SQLMesh's DuckDB default, as `sqlmesh init` leaves it
    assert connection.database == str(repo.warehouse)

    loaded = load_config(repo.config_path)
    (project,) = loaded.projects
    assert (project.name, project.framework, project.gateway) == ("bench", "sqlmesh", "local")
    assert loaded.project_dir(project) == repo.project_dir
    assert load_config(repo.postgres_config_path).projects[0].gateway == "postgres"
    assert "load_definitions" in repo.definitions.read_text()
    assert "multiprocess_executor" in repo.definitions_multiprocess.read_text()
    assert "definitions.py" in (repo.root / "workspace.yaml").read_text()


def test_row_count_check_names_missing_and_wrong_models():
    c.check_row_counts({"a": ROWS, "b": ROWS}, ["a", "b"], label="x")
    with pytest.raises(
        c.ContenderFailed, match=r"x: wrong result: 1 model tables missing, 1 with a row count other than 1000 \(b=3\)"
    ):
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
    # A miss whose floor (measured beside it) misses the target too is out of reach, not a miss.
    assert ratio_row("c / n", claim, native, Target("<=", 1.3), floor=1.4).result == "out of reach: the floor is 1.40×"
    assert ratio_row("c / n", claim, native, Target("<=", 1.3), floor=1.2).result == "miss"
    assert Row("step", 1, 9.0, "ms", "", Target("<=", 3.0, "ms"), floor=4.5).result == (
        "out of reach: the floor is 4.50 ms"
    )
    with pytest.raises(ValueError, match="'<=' or '>='"):
        Target("<", 1)
    with pytest.raises(ValueError, match="no samples for empty"):
        Series("empty", 1, "s").median  # noqa: B018 - the property raises


def test_markdown_table_shows_value_target_and_result():
    rows = [
        ratio_row(
            "claim / native", Series("claim", 100, "s", [3.0]), Series("native", 100, "s", [2.0]), Target("<=", 1.5)
        ),
        Row("peak RSS", 1000, 1.8, "GiB", "rss", Target("<=", 1.5, "GiB")),
    ]
    lines = markdown_table(rows).splitlines()

    assert lines[0].startswith("| Measure | Models | Value | Target | Result |")
    assert lines[2].startswith(
        "| claim / native | 100 | 1.50× | ≤ 1.50 | pass | claim: median 3.00 s (3.00); native: median 2.00 s (2.00) |"
    )
    assert lines[3].startswith("| peak RSS | 1000 | 1.80 GiB | ≤ 1.50 GiB | miss |")
    # A row measured beside a floor says that floor's value of its measure.
    floored = Row("step", 200, 9.0, "ms", "paired", Target("<=", 3.0, "ms"), floor=1.25)
    assert markdown_table([floored]).splitlines()[2].endswith("| miss | paired; floor with the engine: 1.25 ms |")


def test_write_results_replaces_only_the_generated_section(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text(f"# Results\n\nProse stays.\n\n{RESULTS_BEGIN}\nold table\n{RESULTS_END}\n\nMore prose.\n")
    row = Row("peak RSS", 1000, 0.5, "GiB", "rss", Target("<=", 1.5, "GiB"))
    section = results_section(
        [row], command="dagctl-dagster bench --quick", notes=["a note"], now=dt.datetime(2026, 11, 21, 12, 0)
    )

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


@pytest.mark.timeout(600)
def test_dbt_floor_is_stock_dagster_dbt_on_the_same_project(tmp_path):
    import runpy

    import dagster as dg
    from dagster_dbt import DbtCliResource

    from benchmarks.generate_dbt import DBT_JOB_NAME, FLOOR_DBT_JOB_NAME, generate_dbt_repository

    repo = generate_dbt_repository(tmp_path / "dbt", models=4, width=2, threads=2)
    # Ours first: its load parses the project and writes the manifest both read.
    c.run_dagster_job(
        None, repo.definitions, label="ours", job=DBT_JOB_NAME, cwd=repo.root, expected_materializations=4
    )
    defs = runpy.run_path(str(repo.definitions_floor))["defs"]
    assert type(defs.resources["dbt"]) is DbtCliResource  # stock, not dagctl's session
    assert defs.resolve_job_def(FLOOR_DBT_JOB_NAME).executor_def.name == dg.in_process_executor.name
    repo.warehouse.unlink()
    result = c.run_dagster_job(
        None, repo.definitions_floor, label="floor", job=FLOOR_DBT_JOB_NAME, cwd=repo.root, expected_materializations=4
    )
    c.verify_dbt_warehouse(repo, label="floor")
    assert result.run_seconds is not None


def test_command_line_options():
    options = _parse("--models", "100,500", "--widths", "5,20", "--rows", "1000,100000", "--repeats", "3")
    assert (options.models, options.widths, options.rows, options.repeats) == ([100, 500], [5, 20], [1000, 100000], 3)
    assert len(options.sweep()) == 8 and options.sweep()[0] == Shape(models=100, width=5, rows=1000)
    assert (options.dbt_models, options.dbt_threads, options.concurrent_tasks) == ([8, 200], 5, None)

    axes_options = _parse("--sweep", "axes")
    assert axes_options.base_shape() == Shape(models=100, width=20, rows=1000)  # the floor section's shape
    axes = axes_options.sweep()
    assert [(shape.models, shape.width, shape.rows) for shape in axes] == [
        (100, 20, 1000),
        (500, 20, 1000),
        (100, 5, 1000),
        (100, 50, 1000),
        (100, 20, 100000),
        (500, 50, 100000),
    ]

    quick = _parse("--quick", "--skip", "claims", "--concurrent-tasks", "4")
    assert (quick.models, quick.repeats, quick.rss_models, quick.skip) == ([20], 1, 20, {"claims"})
    assert quick.sweep() == [Shape(models=20, width=5, rows=1000, concurrent_tasks=4)]
    assert quick.dbt_models == [8]
    assert (quick.dagster_storage, quick.floors) == (["sqlite"], "base")

    # Concurrency is an axis: every shape for each concurrent_tasks value.
    axis = _parse("--models", "100", "--widths", "5,20", "--rows", "1000", "--concurrent-tasks", "1,4")
    assert [(s.width, s.tasks) for s in axis.sweep()] == [(5, 1), (20, 1), (5, 4), (20, 4)]

    concurrency = _parse("--sweep", "concurrency", "--dagster-storage", "sqlite,postgres")
    shapes = concurrency.sweep()
    assert len(shapes) == 2 * 3 * 3 and {s.rows for s in shapes} == {1000}
    assert {s.tasks for s in shapes} == {1, 4, 8} and {s.warehouse for s in shapes} == {"duckdb"}
    assert (concurrency.dagster_storage, concurrency.floors) == (["sqlite", "postgres"], "each")
    latency = [(s.models, s.tasks) for s in concurrency.latency_shapes()]
    assert latency == [(100, 1), (100, 4), (500, 4), (100, 8), (500, 8)]  # one at a time: the smallest N only
    assert {s.warehouse for s in concurrency.latency_shapes()} == {"latency"}

    with pytest.raises(SystemExit, match="--dagster-storage: unknown storage 'mysql'"):
        _parse("--dagster-storage", "mysql")
    with pytest.raises(SystemExit, match="--concurrent-tasks: expected comma-separated integers"):
        _parse("--concurrent-tasks", "many")

    with pytest.raises(SystemExit, match=r"--widths: expected comma-separated integers"):
        _parse("--widths", "wide")
    with pytest.raises(SystemExit, match=r"--models \(100\) must be at least --width \(200\)"):
        _parse("--models", "100", "--widths", "200")

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


# -- shapes (issue 16) -------------------------------------------------------------------


def test_kind_mix_and_expected_rows():
    shape = Shape(models=9, width=3, rows=100, kinds="mix")
    kinds = {table: model_kind(shape, table) for table in model_table_names(9, 3)}

    assert [kinds[t] for t in ("m_000_000", "m_000_001", "m_000_002")] == ["FULL"] * 3
    assert [kinds[t] for t in ("m_001_000", "m_001_001", "m_001_002")] == ["FULL", "VIEW", "INCREMENTAL_BY_TIME_RANGE"]
    rows = expected_row_counts(shape)
    assert rows["m_001_002"] == 100 * INCREMENTAL_INTERVALS and rows["m_001_001"] == 100
    assert set(expected_row_counts(Shape(models=9, width=3)).values()) == {ROWS}
    with pytest.raises(ValueError, match="kinds must be one of full, mix"):
        Shape(models=9, width=3, kinds="odd")


def test_latency_models_sleep_between_100_and_300_ms_on_postgres(tmp_path):
    import re

    repo = generate_repository(tmp_path / "lat", shape=Shape(models=30, width=10, warehouse="latency"))
    sleeps = [
        float(re.search(r"pg_sleep\(([0-9.]+)\)", path.read_text()).group(1))
        for path in sorted((repo.project_dir / "models").glob("*.sql"))
    ]
    config = (repo.project_dir / "config.yaml").read_text()

    assert len(sleeps) == 30 and min(sleeps) >= 0.1 and max(sleeps) <= 0.3 and len(set(sleeps)) > 3
    assert "default_gateway: postgres" in config and "dialect: postgres" in config
    assert "concurrent_tasks:" not in config  # SQLMesh's own default (4 for PostgreSQL), for both contenders
    assert repo.shape.tasks == 4
    assert "gateway: postgres" in repo.config_path.read_text()


@pytest.mark.timeout(300)
def test_kind_mix_native_run_computes_every_interval_and_the_check_sees_it(tmp_path):
    shape = Shape(models=9, width=3, rows=50, kinds="mix")
    repo = generate_repository(tmp_path / "mix", shape=shape)
    state = c.DuckDBState(repo)
    state.prepare()

    result = c.run_native_sqlmesh(repo, timeout_s=240)
    c.verify_duckdb_warehouse(repo, label="native")
    counts = c.duckdb_row_counts(repo.warehouse, ["m_002_002", "m_002_001"], label="x")

    assert counts == {"m_002_002": 50 * INCREMENTAL_INTERVALS, "m_002_001": 50}
    assert "Run finished for environment 'prod'" in result.output
    state.restore()
    with pytest.raises(c.ContenderFailed, match="row count other than the expected count"):
        c.verify_duckdb_warehouse(repo, label="native")


@pytest.mark.timeout(300)
def test_generated_dbt_project_builds_with_its_tests(tmp_path):
    from benchmarks.generate_dbt import generate_dbt_repository

    repo = generate_dbt_repository(tmp_path / "dbt", models=4, width=2, threads=2, rows=30)

    with pytest.raises(c.ContenderFailed, match=r"dbt: wrong result: the warehouse .*warehouse.duckdb does not exist"):
        c.verify_dbt_warehouse(repo, label="dbt")
    result = c.run_native_dbt(repo.project_dir, threads=2, timeout_s=240)
    c.verify_dbt_warehouse(repo, label="dbt")

    assert "PASS=12" in result.output  # 4 models, 8 tests
    assert "threads: 2" in (repo.project_dir / "profiles.yml").read_text()
    assert "framework: dbt" in repo.config_path.read_text()


def test_worst_ratio_comes_first_per_family():
    from benchmarks.harness import (
        DBT_FLOOR_RATIO,
        FLOOR_CLAIM_RATIO,
        RUN_RATIO,
        TARGET_DBT_FLOOR_RATIO,
        TARGET_FLOOR_RATIO,
        TARGET_RUN_RATIO,
        worst_ratio_rows,
    )

    def row(shape: str, value: float, target=TARGET_RUN_RATIO, prefix=RUN_RATIO, models=200) -> Row:
        return Row(f"{prefix} — {shape}", models, value, "×", "", target)

    rows = [
        row("A", 1.1),
        row("B", 1.6),
        row("C", 0.9),
        row("one at a time", 2.5, target=None),  # no target: not in the concurrent family
        Row("other", 1, 9.0, "×", ""),
        row("F", 1.05, TARGET_FLOOR_RATIO, FLOOR_CLAIM_RATIO),
        row("small", 1.2, TARGET_DBT_FLOOR_RATIO, DBT_FLOOR_RATIO, models=8),
        row("large", 1.05, TARGET_DBT_FLOOR_RATIO, DBT_FLOOR_RATIO, models=200),
    ]
    concurrent, floor, dbt_small, dbt_large = worst_ratio_rows(rows)

    assert concurrent.value == 1.6 and concurrent.result == "miss"
    assert concurrent.measure.startswith("worst, concurrent gateways") and concurrent.detail == "B (of 3 shapes)"
    assert (floor.value, floor.result) == (1.05, "pass")
    assert (dbt_small.value, dbt_small.result, dbt_large.value) == (1.2, "miss", 1.05)

    # A reachable miss is the verdict before a larger value that its floor puts out of reach.
    (concurrent,) = worst_ratio_rows(
        [
            Row(f"{RUN_RATIO} — far", 200, 1.5, "×", "", TARGET_RUN_RATIO, floor=1.45),
            Row(f"{RUN_RATIO} — near", 200, 1.35, "×", "", TARGET_RUN_RATIO, floor=1.2),
        ]
    )
    assert (concurrent.value, concurrent.result, concurrent.floor) == (1.35, "miss", 1.2)


def test_peer_needs_a_virtualenv_with_dagster(tmp_path, monkeypatch):
    from benchmarks.peer import PEER_PYTHON_ENV, peer_python, write_peer_definitions

    monkeypatch.delenv(PEER_PYTHON_ENV, raising=False)
    assert peer_python(None) is None
    (tmp_path / "bin").mkdir()
    python = tmp_path / "bin" / "python"
    python.write_text("")
    with pytest.raises(SystemExit, match="expected the python of a virtualenv with dagster-sqlmesh"):
        peer_python(python)
    (tmp_path / "bin" / "dagster").write_text("")
    monkeypatch.setenv(PEER_PYTHON_ENV, str(python))
    assert peer_python(None) == python

    repo = generate_repository(tmp_path / "repo", models=4, width=2)
    source = write_peer_definitions(repo).read_text()
    compile(source, "definitions_peer.py", "exec")
    assert "sqlmesh_assets" in source and str(repo.project_dir) in source and 'environment="prod"' in source


# -- a platform of projects (issue 26 point 5) -------------------------------------------


def test_a_schema_of_its_own_names_every_model_and_the_checks(tmp_path):
    repo = generate_repository(tmp_path / "p", shape=Shape(models=4, width=2, schema="p07"))
    sql = (repo.project_dir / "models" / "m_001_000.sql").read_text()

    assert "name p07.m_001_000" in sql and "FROM p07.m_000_000" in sql and "bench." not in sql
    assert repo.model_names()[0] == "p07.m_000_000"
    assert repo.shape.slug.endswith("_p07") and Shape(models=4, width=2).slug.endswith("_t1")
    with pytest.raises(ValueError, match="plain SQL identifier"):
        Shape(models=4, width=2, schema="p; drop")


@pytest.mark.timeout(300)
def test_generated_platform_serves_one_location_or_one_per_project(tmp_path):
    from benchmarks.generate_platform import check_platform_size, generate_platform
    from benchmarks.platform_section import layouts
    from dagctl_dagster.config import load_config

    platform = generate_platform(tmp_path / "platform", projects=3, models=24)
    loaded = load_config(platform.config_path)

    assert [(p.name, p.framework) for p in loaded.projects] == [("p00", "sqlmesh"), ("p01", "sqlmesh"), ("p02", "dbt")]
    assert platform.models == 24 and [repo.shape.schema for repo in platform.sqlmesh] == ["p00", "p01"]
    assert platform.sqlmesh[0].warehouse != platform.sqlmesh[1].warehouse
    one, several = layouts(platform)
    assert one.projects_of == {"platform": ["p00", "p01", "p02"]} and one.attribute_of == {"platform": None}
    assert several.projects_of == {"p00": ["p00"], "p01": ["p01"], "p02": ["p02"]}
    assert several.attribute_of == {"p00": "p00", "p01": "p01", "p02": "p02"}
    assert several.location_of("p01") == "p01" and one.location_of("p01") == "platform"

    for path in platform.cache_dirs():
        path.mkdir(parents=True)
    platform.forget_caches()
    assert not any(path.exists() for path in platform.cache_dirs())
    with pytest.raises(ValueError, match="must be a multiple of --platform-projects"):
        check_platform_size(3, 20)
    with pytest.raises(ValueError, match="at least 2"):
        check_platform_size(1, 20)


def test_platform_options():
    full = _parse()
    assert (full.platform_projects, full.platform_models) == (10, 2000)
    assert (_parse("--quick").platform_projects, _parse("--quick").platform_models) == (2, 20)
    assert _parse("--platform-projects", "4", "--platform-models", "40").platform_models == 40
    with pytest.raises(SystemExit, match=r"--platform-models \(41\) must be a multiple"):
        _parse("--platform-projects", "4", "--platform-models", "41")


@pytest.mark.timeout(1200)
def test_platform_section_end_to_end_at_a_tiny_size(tmp_path):
    """Real webserver, real reload, real runs: 2 projects (SQLMesh and dbt) of 10 models."""
    from benchmarks.harness import BenchOptions, BenchResults
    from benchmarks.platform_section import CHANGE_MARK, run_platform_section

    options = BenchOptions.quick(workdir=tmp_path)
    results = BenchResults()
    run_platform_section(tmp_path, options, results, lambda message: None)
    rows = {row.measure: row for row in results.rows}

    one, several = "one location (2 projects)", "2 locations (2 projects)"
    for layout in (one, several):
        assert rows[f"webserver workspace load, cold (no caches) — {layout}"].value > 0
        assert rows[f"webserver workspace load, warm (translation cache) — {layout}"].target.limit == 10
        assert rows[f"`reloadRepositoryLocation` after one model changed — {layout}"].value > 0
        rss = rows[f"run worker peak RSS, one project's run (10 models) — {layout}"]
        assert 0.05 < rss.value and rss.unit == "GiB" and rss.target.limit == 1
    for layout in ("one location", "2 locations"):
        assert (
            rows[f"webserver workspace load, stock Dagster floor (one no-op asset per location) — {layout}"].value > 0
        )
    others = rows[f"other locations reloaded by that reload — {several}"]
    assert others.value == 0 and others.result == "pass"
    assert f"other locations reloaded by that reload — {one}" not in rows
    # Both layouts' reloads changed the one SQLMesh project's file.
    changed = (tmp_path / "platform_2x20" / "p00" / "project" / "models" / "m_001_004.sql").read_text()
    assert changed.count(CHANGE_MARK) == 2
    assert any("each location's load" in note for note in results.notes)


@dataclass
class RunSection:
    """The run section at one tiny shape, and what its contenders' calls returned."""

    rows: dict[str, Row]
    repo: GeneratedRepository
    native: list[c.ProcessResult]
    dagster: dict[str, list[tuple[dict, c.ProcessResult]]]  # job name → (the call's keywords, its result)
    with_step_events: list[c.ProcessResult]  # native runs that also stored each model's step events


@pytest.fixture(scope="module")
def run_section(tmp_path_factory) -> RunSection:
    """``run_benchmarks`` with only the run section, 4 models: native ``sqlmesh run``, the
    claim-aware ``bench_run`` and stock Dagster's ``floor_run``, each checked by the harness.
    The tests of the native contender and of the floor job read the same runs (one plan, one
    run each, instead of a repository, a plan and a run of their own). The claim-aware run's
    ``dagster`` CLI runs under ``benchmarks/cpu_probe.py`` (it only adds thread-CPU clocks), so
    the CPU probe's test reads that run's report instead of running the job once more."""
    import os
    import stat

    from benchmarks.harness import SECTIONS, BenchOptions, run_benchmarks

    workdir = tmp_path_factory.mktemp("run_section")
    probed_dagster = workdir / "dagster_under_cpu_probe"
    probed_dagster.write_text(
        f'#!/bin/sh\nexec "{sys.executable}" "{c.REPO_ROOT / "benchmarks" / "cpu_probe.py"}" '
        f'"{c.venv_command("dagster")}" "$@"\n'
    )
    probed_dagster.chmod(probed_dagster.stat().st_mode | stat.S_IXUSR)
    assert os.access(probed_dagster, os.X_OK)
    options = BenchOptions(
        models=[4],
        widths=[2],
        rows=[1000],
        concurrent_tasks=[1],
        floors="each",
        repeats=1,
        skip=set(SECTIONS) - {"run"},
        workdir=workdir,
    )
    repos: list[GeneratedRepository] = []
    native: list[c.ProcessResult] = []
    dagster: dict[str, list[tuple[dict, c.ProcessResult]]] = {}
    with_step_events: list[c.ProcessResult] = []
    run_native_sqlmesh, run_dagster_job = c.run_native_sqlmesh, c.run_dagster_job
    run_with_step_events = c.run_native_sqlmesh_with_step_events

    def native_and_keep(repo, **kwargs):
        result = run_native_sqlmesh(repo, **kwargs)
        repos.append(repo)
        native.append(result)
        snapshot = repo.root / ".after_native"  # the warehouse and state as native's run left them
        snapshot.mkdir(exist_ok=True)
        for path in c.DuckDBState(repo)._files():
            if path.exists():
                shutil.copy2(path, snapshot / path.name)
        return result

    def job_and_keep(repo, definitions, **kwargs):
        if kwargs.get("job", JOB_NAME) == JOB_NAME:
            kwargs["dagster"] = str(probed_dagster)
        result = run_dagster_job(repo, definitions, **kwargs)
        dagster.setdefault(kwargs.get("job", JOB_NAME), []).append((kwargs, result))
        return result

    def with_step_events_and_keep(repo, storage, **kwargs):
        result = run_with_step_events(repo, storage, **kwargs)
        with_step_events.append(result)
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(c, "run_native_sqlmesh", native_and_keep)
        patch.setattr(c, "run_dagster_job", job_and_keep)
        patch.setattr(c, "run_native_sqlmesh_with_step_events", with_step_events_and_keep)
        results = run_benchmarks(options, progress=lambda _: None)
    (repo,) = set(repos)
    rows = {row.measure.split(" — ")[0]: row for row in results.rows}
    return RunSection(rows=rows, repo=repo, native=native, dagster=dagster, with_step_events=with_step_events)


@pytest.mark.timeout(600)
def test_the_run_section_measures_the_floor_with_sqlmesh_beside_each_shape(run_section):
    """Native's in-run time (its own Context.run) plus stock Dagster's time outside the run is the
    floor with SQLMesh: its ratios say which targets any integration could reach at that shape."""
    from benchmarks.harness import (
        CLAIM_ENGINE_FLOOR_RATIO,
        CLAIM_RUN_FLOOR_RATIO,
        CLAIM_STARTED_FLOOR_RATIO,
        CLAIM_STEPS_FLOOR_RATIO,
        ENGINE_FLOOR_RATIO,
        FLOOR_CLAIM_RATIO,
        RUN_FLOOR_RATIO,
        RUN_RATIO,
        STARTED_FLOOR_RATIO,
        STEP_OVER_FLOOR,
        STEP_OVER_NATIVE,
        STEPS_FLOOR_RATIO,
    )

    rows = run_section.rows
    floor_with_sqlmesh = rows[ENGINE_FLOOR_RATIO]
    assert floor_with_sqlmesh.value > 0 and "native's model evaluations" in floor_with_sqlmesh.detail
    assert rows[CLAIM_ENGINE_FLOOR_RATIO].value > 0 and STEP_OVER_NATIVE in rows
    # Beside it, the floor whose evaluations are each followed by one Dagster step's events,
    # the same run's whole Context.run (SQLMesh's scheduling too), and with SQLMesh's import
    # after Dagster's: the lowest an integration with one step per model can show, so the
    # targets' rows carry the last.
    floor_with_steps = rows[STEPS_FLOOR_RATIO]
    assert floor_with_steps.value > 0 and "each followed by its step's events" in floor_with_steps.detail
    assert rows[CLAIM_STEPS_FLOOR_RATIO].value > 0
    floor_with_run = rows[RUN_FLOOR_RATIO]
    assert floor_with_run.value >= floor_with_steps.value and "whole `Context.run`" in floor_with_run.detail
    assert rows[CLAIM_RUN_FLOOR_RATIO].value > 0
    floor_with_start = rows[STARTED_FLOOR_RATIO]
    assert floor_with_start.value > floor_with_run.value and "SQLMesh's import" in floor_with_start.detail
    assert rows[CLAIM_STARTED_FLOOR_RATIO].value > 0
    assert rows[FLOOR_CLAIM_RATIO].floor is not None and rows[STEP_OVER_FLOOR].floor is not None
    assert rows[RUN_RATIO].floor == pytest.approx(floor_with_start.value)
    (events_run,) = run_section.with_step_events
    # SQLMesh's import is measured after Dagster's, in the same process: not hidden by an
    # earlier import of it, so it takes a real share of a second.
    assert events_run.sqlmesh_import_seconds is not None and events_run.sqlmesh_import_seconds > 0.1
    assert events_run.evaluation_seconds is not None and "Run finished for environment 'prod'" in events_run.output
    assert events_run.run_seconds is not None and events_run.run_seconds >= events_run.evaluation_seconds


@pytest.mark.timeout(600)
def test_the_floor_with_step_events_stores_one_steps_events_per_model(run_section, tmp_path):
    """``native_in_run`` with a Dagster home: the unchanged ``sqlmesh run``, and after each
    model's evaluation its step's four events under that model's step and asset key."""
    import dagster as dg

    from benchmarks.native_in_run import STEP_EVENTS_HOME_ENV, steps_recorded

    repo = run_section.repo
    c.DuckDBState(repo).restore()
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    result = c.run_native_sqlmesh(repo, extra_env={STEP_EVENTS_HOME_ENV: str(tmp_path)})
    c.verify_duckdb_warehouse(repo, label="native with step events")
    assert steps_recorded(result.output) == repo.models

    instance = dg.DagsterInstance.from_config(str(tmp_path))
    try:
        (run,) = instance.get_runs()
        stored = [entry.dagster_event for entry in instance.all_logs(run.run_id) if entry.dagster_event]
        models = [tuple(name.split(".")) for name in repo.model_names()]
        assert sorted(instance.get_asset_keys()) == sorted(dg.AssetKey(list(model)) for model in models)
        by_step: dict[str, list[str]] = {}
        for event in stored:
            by_step.setdefault(event.step_key, []).append(event.event_type_value)
        four = ["STEP_START", "STEP_OUTPUT", "ASSET_MATERIALIZATION", "STEP_SUCCESS"]
        assert by_step == {"__".join(model): four for model in models}
    finally:
        instance.dispose()


@pytest.mark.timeout(600)
def test_native_contender_is_checked_against_the_warehouse(run_section):
    """The run section's native ``sqlmesh run`` (checked there by ``verify_duckdb_warehouse``)."""
    repo = run_section.repo
    (result,) = run_section.native
    assert result.seconds > 0
    assert "Run finished for environment 'prod'" in result.output
    # Its in-run time is the wall time of SQLMesh's own Context.run, inside the process's, and
    # the span of its model evaluations is inside that.
    assert result.run_seconds is not None and 0 < result.run_seconds < result.seconds
    assert result.evaluation_seconds is not None and 0 < result.evaluation_seconds < result.run_seconds

    # The warehouse and state as native's run left them pass the check.
    state = c.DuckDBState(repo)
    for path in state._files():
        path.unlink(missing_ok=True)
        if (repo.root / ".after_native" / path.name).exists():
            shutil.copy2(repo.root / ".after_native" / path.name, path)
    c.verify_duckdb_warehouse(repo, label="native")

    # Each repetition starts again from the planned, empty state: the tables exist and are
    # empty (planned but not run), so the check refuses the result.
    state.restore()
    with pytest.raises(c.ContenderFailed, match=f"4 with a row count other than {ROWS}"):
        c.verify_duckdb_warehouse(repo, label="native")


@pytest.mark.timeout(600)
def test_floor_job_is_stock_dagster_on_no_op_assets_shaped_like_the_project(run_section):
    import runpy

    import dagster as dg

    repo = run_section.repo
    defs = runpy.run_path(str(repo.definitions_floor))["defs"]
    job = defs.get_job_def(FLOOR_JOB_NAME)
    assert job.executor_def.name == dg.in_process_executor.name
    asset_graph = defs.resolve_asset_graph()
    parents = {
        key.path[-1]: tuple(sorted(p.path[-1] for p in asset_graph.get(key).parent_keys))
        for key in asset_graph.get_all_asset_keys()
    }
    assert parents == {table: tuple(sorted(upstream)) for table, upstream in upstream_tables(4, 2).items()}

    # The harness's own check: one successful run that materialized every asset.
    ((kwargs, result),) = run_section.dagster[FLOOR_JOB_NAME]
    assert kwargs["expected_materializations"] == 4 and kwargs["cwd"] == repo.root
    assert result.run_seconds is not None and result.run_seconds > 0


@pytest.mark.timeout(600)
def test_cpu_probe_splits_a_run_by_thread_cpu(run_section):
    """benchmarks/cpu_probe.py wraps each engine's CLI and reports per model step (or model):
    native ``sqlmesh run`` here, and the run section's claim-aware ``bench_run`` (its ``dagster``
    CLI under the probe, one model at a time, its warehouse checked there by the harness)."""
    import sys

    repo = run_section.repo  # the run section's project (4 models, concurrent_tasks 1), planned
    state = c.DuckDBState(repo)
    state.restore()
    probe = [sys.executable, str(c.REPO_ROOT / "benchmarks" / "cpu_probe.py")]
    native = c.run_timed(
        [*probe, c.venv_command("sqlmesh"), "-p", str(repo.project_dir), "run"], label="native", cwd=repo.root
    )
    assert "cpu_probe: 4 model evaluations" in native.output and "Scheduler.evaluate:" in native.output
    assert "process CPU by OS thread (user + system):\n  MainThread: 1 thread(s)" in native.output
    c.verify_duckdb_warehouse(repo, label="native")

    ((kwargs, ours),) = run_section.dagster[JOB_NAME]
    assert kwargs["dagster"].endswith("dagster_under_cpu_probe") and kwargs["max_concurrent"] == 1
    assert "cpu_probe: 4 model steps" in ours.output
    for part in (
        "SQLMesh evaluation (execute_unit):",
        "event-log writes:",
        "the run (start to end):",
        "dagctl-step-worker",
    ):
        assert part in ours.output
    assert ours.run_seconds is not None and ours.run_seconds > 0  # the harness checked the run in its instance


@pytest.mark.timeout(600)
def test_postgres_dagster_storage_holds_the_run_and_its_claims_in_a_new_database(run_section, postgres_server_url):
    import sqlalchemy as sa

    repo = run_section.repo  # the run section's project, back to its planned, empty state
    c.DuckDBState(repo).restore()
    storage = c.DagsterStorage("postgres", postgres_server_url, database="bench_dagster_test")
    seen: dict[str, object] = {}
    original_verify = c.verify_dagster_run

    def verify_and_look(home, **kwargs):
        seen["yaml"] = (home / "dagster.yaml").read_text()
        engine = sa.create_engine(
            sa.engine.make_url(postgres_server_url).set(database=storage.database), poolclass=sa.pool.NullPool
        )
        with engine.connect() as connection:
            seen["runs"] = connection.execute(sa.text("SELECT count(*) FROM runs")).scalar()
            seen["claims"] = connection.execute(sa.text("SELECT count(*) FROM dagctl_claims")).scalar()
        engine.dispose()
        return original_verify(home, **kwargs)

    c.verify_dagster_run, saved = verify_and_look, c.verify_dagster_run
    try:
        result = c.run_dagster_job(repo, repo.definitions, label="claim-aware", max_concurrent=1, storage=storage)
    finally:
        c.verify_dagster_run = saved
    c.verify_duckdb_warehouse(repo, label="claim-aware")

    assert "postgres_url" in str(seen["yaml"]) and seen["runs"] == 1
    assert seen["claims"] == 0  # the claim table lives in the instance's database; every claim was released
    assert result.run_seconds is not None and result.cpu_seconds > 0
    engine = sa.create_engine(postgres_server_url, poolclass=sa.pool.NullPool)
    with engine.connect() as connection:
        names = connection.execute(sa.text("SELECT datname FROM pg_database")).scalars().all()
    engine.dispose()
    assert storage.database not in names  # dropped after the run: every repetition starts empty


@pytest.mark.timeout(300)
def test_event_batch_probe_stores_a_real_runs_step_events_both_ways(postgres_server_url):
    """benchmarks/event_batch_probe.py: every event as it comes against batched materializations,
    on both of Dagster's storages; each stored event lands in its run."""
    import subprocess
    import sys

    probe = c.REPO_ROOT / "benchmarks" / "event_batch_probe.py"
    result = subprocess.run(
        [sys.executable, str(probe), "6", "1", "--batch", "3", "--postgres-url", postgres_server_url],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    )
    for storage in ("sqlite", "postgres"):
        assert f"{storage:8} every event as it comes" in result.stdout
        assert f"{storage:8} materializations of 3 steps batched" in result.stdout
        assert f"{storage:8} saved by batching:" in result.stdout


def test_event_batch_probe_keeps_every_event_of_a_step(tmp_path):
    import dagster as dg

    from benchmarks import event_batch_probe as probe

    steps = probe._step_events(4)
    assert [sorted(e.dagster_event.event_type_value for e in step) for step in steps] == [sorted(probe.STEP_EVENTS)] * 4
    with probe._instance("sqlite", None) as instance:
        probe._store(instance, steps, batch=3)
        (run,) = instance.get_runs()
        stored = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        assert len(stored) == 4 and len(instance.all_logs(run.run_id)) == 16
