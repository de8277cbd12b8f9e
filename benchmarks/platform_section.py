"""Issue 26 point 5: the scale of a platform, served as one code location and as one per project.

A generated deployment (:mod:`benchmarks.generate_platform`, by default 10 projects and 2,000
models) is served by a real ``dagster-webserver`` in two layouts: one location with every
project (``workspace_one.yaml``) and one location per project (``dagctl-dagster workspace``).
Each repetition, for each layout (the layout that goes first alternates):

1. **cold load**: no translation cache, no SQLMesh cache, no dbt manifest (their directories
   deleted); webserver start → every location ``LOADED`` (``locationStatusesOrError``), then
   the workspace is checked (:func:`~benchmarks.webserver_probe.check_served`);
2. **warm load**: a new webserver, the caches the cold load filled;
3. **reload after one project's change**: in that warm webserver, one model file of one
   project changes and its location is reloaded (``reloadRepositoryLocation``); every other
   location's ``versionKey`` and ``updateTimestamp`` are compared before and after.

Beside them, stock Dagster's floor: the same number of locations serving one no-op asset
each (:mod:`benchmarks.webserver_floor`). Then the first project's ``<project>_run`` runs
under ``dagster job execute`` in each layout (the one-location run worker loads every
project's definitions), with its peak RSS from ``wait4`` and its tables checked.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from benchmarks import contenders as c
from benchmarks.generate_platform import (
    PLATFORM_LOCATION,
    SQLMESH_CONCURRENT_TASKS,
    Platform,
    generate_platform,
)
from benchmarks.report import GIB, Row, Series, Target, value_row
from benchmarks.webserver_floor import measure_webserver_floor
from benchmarks.webserver_probe import (
    check_served,
    location_statuses,
    reload_location,
    started_webserver,
    wait_until_loaded,
)

TARGET_COLD_LOAD = Target("<=", 30, "s")
TARGET_WARM_LOAD = Target("<=", 10, "s")
TARGET_OTHERS_RELOADED = Target("<=", 0, "locations")
TARGET_RUN_RSS = Target("<=", 1, "GiB")
CHANGE_MARK = "-- platform benchmark: a change to reload"


@dataclass(frozen=True)
class Layout:
    """One way of serving the deployment: a workspace file, its locations and their projects."""

    title: str
    workspace: Path
    projects_of: dict[str, list[str]]  # location → its projects
    attribute_of: dict[str, str | None]  # location → the definitions.py attribute its run worker loads

    def location_of(self, project: str) -> str:
        return next(location for location, projects in self.projects_of.items() if project in projects)


@dataclass
class LayoutSeries:
    cold: Series
    warm: Series
    reload: Series
    others_reloaded: Series
    rss: Series
    run_wall: Series
    floor: Series
    loaded_at: dict[str, dict[str, list[float]]] = field(default_factory=lambda: {"cold": {}, "warm": {}})


def layouts(platform: Platform) -> list[Layout]:
    """The one-location layout, and the several-locations layout ``dagctl-dagster workspace`` wrote."""
    from dagctl_dagster.config import load_config
    from dagctl_dagster.locations import locations

    written = yaml.safe_load(platform.locations_workspace.read_text())["load_from"]
    entries = {entry["python_file"]["location_name"]: entry["python_file"]["attribute"] for entry in written}
    projects_of = locations(load_config(platform.config_path).config)
    if set(entries) != set(projects_of):
        raise c.ContenderFailed(
            f"dagctl-dagster workspace wrote locations {sorted(entries)}, not {sorted(projects_of)}"
        )
    return [
        Layout(
            "one location",
            platform.one_location_workspace,
            {PLATFORM_LOCATION: platform.names},
            {PLATFORM_LOCATION: None},
        ),
        Layout(f"{len(entries)} locations", platform.locations_workspace, projects_of, entries),
    ]


def run_platform_section(workdir: Path, options, results, say: Callable[[str], None]) -> None:
    """Measure, check and append the rows; ``options`` is a :class:`~benchmarks.harness.BenchOptions`."""
    load_before = os.getloadavg()
    platform = generate_platform(
        workdir / f"platform_{options.platform_projects}x{options.platform_models}",
        projects=options.platform_projects,
        models=options.platform_models,
    )
    per_project = options.platform_models // options.platform_projects
    say(f"[platform {len(platform.names)} projects, {platform.models} models] {platform.root}")
    measured = {layout.title: (layout, _series(layout, platform)) for layout in layouts(platform)}
    changed_project = platform.sqlmesh[-1]
    changed_model = sorted((changed_project.project_dir / "models").glob("*.sql"))[-1]
    with tempfile.TemporaryDirectory(prefix="bench_platform_home_") as home:
        env = _environment(platform, Path(home))
        for repetition in range(options.repeats):
            order = list(measured.values())
            for layout, series in order if repetition % 2 == 0 else reversed(order):
                _measure_loads(platform, layout, series, env, changed_model, changed_project.shape.schema, options, say)
                say(f"  [{repetition + 1}/{options.repeats}] {layout.title}: {_latest(series)}")
    for repetition in range(options.repeats):
        order = list(measured.values())
        for layout, series in order if repetition % 2 == 0 else reversed(order):
            floor_root = platform.root / "floor"
            locations = len(layout.projects_of)
            measure_webserver_floor(
                floor_root, locations=locations, repeats=1, timeout_s=options.timeout_s, series=series.floor
            )
            say(f"  [{repetition + 1}/{options.repeats}] {series.floor.label}: {series.floor.samples[-1]:.1f} s")
    _measure_runs(platform, [layout for layout, _ in measured.values()], measured, options, say)
    results.rows.extend(platform_rows(list(measured.values()), per_project))
    results.notes.extend(_notes(platform, measured, changed_model, load_before))


def _series(layout: Layout, platform: Platform) -> LayoutSeries:
    models = platform.models
    per_project = platform.sqlmesh[0].models
    return LayoutSeries(
        cold=Series(f"cold load, {layout.title}", models, "s"),
        warm=Series(f"warm load, {layout.title}", models, "s"),
        reload=Series(f"reload, {layout.title}", models if len(layout.projects_of) == 1 else per_project, "s"),
        others_reloaded=Series("other locations with a new versionKey or updateTimestamp", None, "locations"),
        rss=Series(f"run worker peak RSS, {layout.title}", per_project, "GiB"),
        run_wall=Series(f"`dagster job execute` wall, {layout.title}", per_project, "s"),
        floor=Series(f"stock Dagster, {len(layout.projects_of)} location(s) of one no-op asset", None, "s"),
    )


def _environment(platform: Platform, home: Path) -> dict[str, str]:
    """The webserver's: a fresh SQLite instance (created before any clock starts); caches in
    the project directories, as in a deployment without ``DAGCTL_ASSET_CACHE_DIR``."""
    Path(home, "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    import dagster as dg

    dg.DagsterInstance.from_config(str(home)).dispose()
    return {**os.environ, "DAGSTER_HOME": str(home), **_project_env(platform)}


def _project_env(platform: Platform) -> dict[str, str]:
    return {"DAGCTL_CONFIG": str(platform.config_path), "DAGCTL_ASSET_CACHE_DIR": "", "DAGCTL_ASSET_CACHE": ""}


def _measure_loads(
    platform: Platform,
    layout: Layout,
    series: LayoutSeries,
    env: dict[str, str],
    changed_model: Path,
    changed_project: str,
    options,
    say,
) -> None:
    locations = set(layout.projects_of)
    jobs = {location: [f"{name}_run" for name in names] for location, names in layout.projects_of.items()}
    models = {location: _models_of(platform, names) for location, names in layout.projects_of.items()}
    log = platform.root / f"webserver_{layout.workspace.stem}.log"
    platform.forget_caches()
    with started_webserver(platform.root, layout.workspace.name, env, log) as server:
        cold = wait_until_loaded(server, locations, timeout_s=options.timeout_s)
        check_served(server.port, jobs, models)
    with started_webserver(platform.root, layout.workspace.name, env, log) as server:
        warm = wait_until_loaded(server, locations, timeout_s=options.timeout_s)
        check_served(server.port, jobs, models)
        seconds, others = _reload_after_change(server.port, layout.location_of(changed_project), changed_model)
    series.cold.samples.append(cold.seconds)
    series.warm.samples.append(warm.seconds)
    series.reload.samples.append(seconds)
    series.others_reloaded.samples.append(float(len(others)))
    for kind, load in (("cold", cold), ("warm", warm)):
        for location, at in load.loaded_at.items():
            series.loaded_at[kind].setdefault(location, []).append(at)
    if others:
        say(f"  reloading {layout.location_of(changed_project)} also reloaded {', '.join(others)}")


def _models_of(platform: Platform, names: list[str]) -> int:
    sizes = {repo.shape.schema: repo.models for repo in platform.sqlmesh} | {platform.dbt_name: platform.dbt.models}
    return sum(sizes[name] for name in names)


def _reload_after_change(port: int, location: str, model_file: Path) -> tuple[float, list[str]]:
    """Change one model (a comment line: a new file content, the same tables), reload its location.

    Returns the reload's seconds and the other locations whose status changed meanwhile.
    """
    before = location_statuses(port)
    with model_file.open("a") as out:
        out.write(f"{CHANGE_MARK} {time.time_ns()}\n")
    seconds = reload_location(port, location)
    after = location_statuses(port)
    if after[location] == before[location]:
        raise c.ContenderFailed(f"reload of {location}: its versionKey and updateTimestamp did not change")
    return seconds, sorted(name for name in before if name != location and after.get(name) != before[name])


def _measure_runs(platform: Platform, ordered: list[Layout], measured, options, say) -> None:
    """``<first project>_run`` in each layout, alternating, each from the planned, empty state."""
    repo = platform.sqlmesh[0]
    project = repo.shape.schema
    state = c.DuckDBState(repo)
    say(f"[platform] planning {project} once; every run starts from a copy")
    state.prepare()
    for repetition in range(options.repeats):
        for layout in ordered if repetition % 2 == 0 else list(reversed(ordered)):
            series = measured[layout.title][1]
            state.restore()
            result = c.run_dagster_job(
                repo,
                platform.definitions,
                label=series.run_wall.label,
                extra_env=_project_env(platform),
                timeout_s=options.timeout_s,
                job=f"{project}_run",
                cwd=platform.root,
                max_concurrent=SQLMESH_CONCURRENT_TASKS,
                attribute=layout.attribute_of[layout.location_of(project)],
            )
            c.verify_duckdb_warehouse(repo, label=series.run_wall.label)
            series.rss.samples.append(result.peak_rss_bytes / GIB)
            series.run_wall.samples.append(result.seconds)
            say(
                f"  {project}_run, {layout.title} [{repetition + 1}/{options.repeats}]: "
                f"{series.rss.samples[-1]:.2f} GiB, {result.seconds:.1f} s"
            )


def platform_rows(measured: list[tuple[Layout, LayoutSeries]], per_project: int) -> list[Row]:
    """The section's rows, each measure for every layout in turn."""

    def where(layout: Layout) -> str:
        return f"{layout.title} ({sum(len(p) for p in layout.projects_of.values())} projects)"

    rows = [
        value_row(f"webserver workspace load, cold (no caches) — {where(lay)}", s.cold, TARGET_COLD_LOAD)
        for lay, s in measured
    ]
    rows += [
        value_row(f"webserver workspace load, warm (translation cache) — {where(lay)}", s.warm, TARGET_WARM_LOAD)
        for lay, s in measured
    ]
    rows += [
        value_row(
            f"webserver workspace load, stock Dagster floor (one no-op asset per location) — {lay.title}", s.floor
        )
        for lay, s in measured
    ]
    for layout, series in measured:
        rows.append(value_row(f"`reloadRepositoryLocation` after one model changed — {where(layout)}", series.reload))
        if len(layout.projects_of) > 1:
            rows.append(
                value_row(
                    f"other locations reloaded by that reload — {where(layout)}",
                    series.others_reloaded,
                    TARGET_OTHERS_RELOADED,
                )
            )
    rows += [
        value_row(
            f"run worker peak RSS, one project's run ({per_project} models) — {where(lay)}", s.rss, TARGET_RUN_RSS
        )
        for lay, s in measured
    ]
    rows += [
        value_row(f"`dagster job execute` wall time of that run — {where(lay)}", s.run_wall) for lay, s in measured
    ]
    return rows


def _notes(platform: Platform, measured, changed_model: Path, load_before) -> list[str]:
    notes = [
        f"Platform: {len(platform.sqlmesh)} SQLMesh projects of {platform.sqlmesh[0].models} FULL DuckDB models "
        f"(width {platform.sqlmesh[0].width}, own schema, warehouse and state files, concurrent_tasks "
        f"{SQLMESH_CONCURRENT_TASKS}) and one dbt project of {platform.dbt.models} table models; cold = each "
        "SQLMesh project's `.cache` (SQLMesh's cache and the translation cache) and the dbt `target/` deleted. "
        f"The reload changes {changed_model.parent.parent.parent.name}/models/{changed_model.name} (a comment line)."
    ]
    for title, (layout, series) in measured.items():
        if len(layout.projects_of) == 1:
            continue
        for kind in ("cold", "warm"):
            per_location = {name: statistics.median(ats) for name, ats in series.loaded_at[kind].items()}
            listed = ", ".join(f"{name} {at:.1f}" for name, at in sorted(per_location.items(), key=lambda x: x[1]))
            notes.append(
                f"{title}, {kind}: seconds from webserver start to each location's load (its updateTimestamp; "
                f"median): {listed}. The webserver answers once every location has loaded."
            )
    load_after = os.getloadavg()
    notes.append(
        "Platform section load average (1, 5, 15 min) before: "
        + ", ".join(f"{v:.2f}" for v in load_before)
        + "; after: "
        + ", ".join(f"{v:.2f}" for v in load_after)
        + "."
    )
    return notes


def _latest(series: LayoutSeries) -> str:
    return (
        f"cold {series.cold.samples[-1]:.1f} s, warm {series.warm.samples[-1]:.1f} s, "
        f"reload {series.reload.samples[-1]:.1f} s (others reloaded: {series.others_reloaded.samples[-1]:.0f})"
    )
