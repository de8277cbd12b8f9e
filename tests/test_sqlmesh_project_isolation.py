"""Issue 26, point 2: SQLMesh projects of one code location each get their own Python code.

The fixture `tests/fidelity/same_name_packages` holds two projects, alpha and beta, that each
have a top-level package `helpers` imported by a macro module and a Python model of the same
file names, with other content. Each project's native run (`sqlmesh plan` + `sqlmesh run` in
its own directory, a process of its own) is the oracle: Dagster loading both projects in one
process, running each project's job, and running both projects in one run must leave exactly
its tables, views and intervals, and show its snapshot versions as the assets' code versions.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import pytest
from fidelity.harness import (
    FIDELITY_DIR,
    VENV_BIN,
    CommandResult,
    Fixture,
    Outcome,
    StateTarget,
    clean_env,
    diff_outcomes,
    duckdb_files,
    elsewhere_dir,
    failed_step,
    prepare_copy,
    read_states,
    run_command,
    run_dagster,
    run_native,
    utc_today,
    vacuity_problems,
    warehouse_snapshot,
)

FIXTURE_ROOT = FIDELITY_DIR / "same_name_packages"
PROJECTS = ("alpha", "beta")
# beta first: its run worker loads the definitions of both projects (alpha, then beta) before
# beta's first plan loads beta again, in one process.
FIXTURE = Fixture(
    name="same_name_packages",
    root=FIXTURE_ROOT,
    projects=PROJECTS,
    jobs=("beta_run", "alpha_run"),
    native_cwd="alpha",
    native_paths=(),
)
NATIVE_STEPS = 3  # plan, run, run


@dataclasses.dataclass(frozen=True)
class NativeProject:
    outcome: Outcome
    versions: dict[str, str]  # snapshot name -> version


class NativeRuns:
    """Each project's native run on a copy of its own, once per UTC day (intervals depend on it)."""

    def __init__(self, work: Path):
        self.work = work
        self._by_day: dict[str, dict[str, NativeProject]] = {}

    def today(self) -> dict[str, NativeProject]:
        day = utc_today()
        if day not in self._by_day:
            self._by_day[day] = self._run(self.work / day)
        return self._by_day[day]

    def _run(self, work: Path) -> dict[str, NativeProject]:
        copy = prepare_copy(FIXTURE, work / "native")
        native: dict[str, NativeProject] = {}
        for project in PROJECTS:
            results = run_native(dataclasses.replace(FIXTURE, native_cwd=project), copy, work / "logs" / project)
            failed = failed_step(results, NATIVE_STEPS)
            assert failed is None, f"native sqlmesh of {project} failed (a fixture problem):\n{failed.describe()}"
        # Both projects' intervals and versions, read by one process.
        states = read_states(*(StateTarget(copy / project) for project in PROJECTS))
        for project, state in zip(PROJECTS, states, strict=True):
            outcome = Outcome(warehouse=warehouse_snapshot(copy / project), state=state.intervals)
            problems = vacuity_problems(outcome)
            assert not problems, f"[{project}] the comparison would prove nothing: {problems}"
            native[project] = NativeProject(outcome, state.versions)
        return native


@pytest.fixture(scope="module")
def native_runs(tmp_path_factory: pytest.TempPathFactory) -> NativeRuns:
    return NativeRuns(tmp_path_factory.mktemp("native"))


def project_outcomes(copy: Path) -> dict[str, Outcome]:
    """Each project's own warehouse files and its prod environment's intervals (the states read
    by one process)."""
    states = read_states(*(StateTarget(copy / project) for project in PROJECTS))
    return {
        project: Outcome(warehouse=warehouse_snapshot(copy / project), state=state.intervals)
        for project, state in zip(PROJECTS, states, strict=True)
    }


def differences(native: dict[str, NativeProject], copy: Path) -> list[str]:
    outcomes = project_outcomes(copy)
    return [
        f"[{project}] {line}"
        for project in PROJECTS
        for line in diff_outcomes(native[project].outcome, outcomes[project])
    ]


# --- (a) one process loads both projects ---------------------------------------------------------


@pytest.mark.timeout(600)
def test_a_location_with_both_projects_loads_and_shows_each_projects_own_code(native_runs, tmp_path: Path):
    copy = prepare_copy(FIXTURE, tmp_path / "copy")
    config = copy / ".dagctl" / "config.yaml"
    loads = [_definitions(config, tmp_path), _definitions(config, tmp_path)]  # a cold, then a warm cache
    native = native_runs.today()
    expected = {_asset_key(name): version for project in PROJECTS for name, version in native[project].versions.items()}
    for index, dumped in enumerate(loads):
        shown = {key: asset["code_version"] for key, asset in dumped["assets"].items() if asset["group"] in PROJECTS}
        assert shown == expected, f"load {index + 1}: code versions differ from each project's native plan"
        assert dumped["loadable_error"] is None, dumped["loadable_error"]


def _definitions(config: Path, work: Path) -> dict:
    result = _definitions_result(config, work)
    assert result.ok, result.describe()
    return json.loads(result.output.strip().splitlines()[-1])


def _definitions_result(config: Path, work: Path) -> CommandResult:
    elsewhere = elsewhere_dir(work)
    elsewhere.mkdir(parents=True, exist_ok=True)
    return run_command(
        [str(VENV_BIN / "python"), str(FIDELITY_DIR / "definitions_dump.py"), str(config)], elsewhere, clean_env()
    )


def _asset_key(snapshot_name: str) -> str:
    """`"db"."alpha"."tagged"` -> `alpha/tagged` (the translator's key: schema and table)."""
    return "/".join(part.strip('"') for part in snapshot_name.split(".")[-2:])


# --- (b) each project's own job ---------------------------------------------------------------


@pytest.mark.timeout(1800)
def test_each_projects_run_matches_its_native_run(native_runs, tmp_path: Path):
    for attempt in (1, 2):
        work = tmp_path / f"attempt_{attempt}"
        day = utc_today()
        native = native_runs.today()
        copy = prepare_copy(FIXTURE, work / "dagster")
        results = run_dagster(FIXTURE, copy, work / "dagster-run")
        if utc_today() == day:
            break
    failed = failed_step(results, 2 * len(FIXTURE.jobs))
    assert failed is None, f"dagster job failed:\n{failed.describe()}"
    diffs = differences(native, copy)
    assert not diffs, "dagster differs from each project's native sqlmesh:\n" + "\n".join(diffs)


# --- (c) one run over both projects -------------------------------------------------------------


@pytest.mark.timeout(1800)
def test_one_run_over_both_projects_gives_each_its_own_code(native_runs, tmp_path: Path):
    for attempt in (1, 2):
        work = tmp_path / f"attempt_{attempt}"
        day = utc_today()
        native = native_runs.today()
        copy = prepare_copy(FIXTURE, work / "dagster")
        result = _materialize_all(copy, work)
        if utc_today() == day:
            break
    assert result.ok and "RUN_SUCCESS" in result.output, result.describe()
    assert not duckdb_files(elsewhere_dir(work)), "a warehouse file was written where Dagster was started"
    diffs = differences(native, copy)
    assert not diffs, "one run over both projects differs from their native sqlmesh:\n" + "\n".join(diffs)


def _materialize_all(copy: Path, work: Path) -> CommandResult:
    """ "Materialize all" of both projects' groups in one run, through the `dagster` CLI."""
    definitions = copy / "definitions.py"
    definitions.write_text(
        "from dagctl_dagster import load_definitions\n\n"
        f"defs = load_definitions({str((copy / '.dagctl' / 'config.yaml').resolve())!r})\n"
    )
    home = work / "dagster_home"
    home.mkdir(parents=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    elsewhere = elsewhere_dir(work)
    elsewhere.mkdir(parents=True)
    selection = " or ".join(f"group:{project}" for project in PROJECTS)
    args = [str(VENV_BIN / "dagster"), "asset", "materialize", "-f", str(definitions), "--select", selection]
    result = run_command(args, elsewhere, clean_env(DAGSTER_HOME=str(home)))
    (work / "materialize.log").write_text(result.describe() + "\n\n" + result.output)
    return result


# --- loads in threads of one process --------------------------------------------------------------


@pytest.mark.timeout(600)
def test_projects_loaded_at_once_in_threads_each_serialize_their_own_code(tmp_path: Path):
    """What a run evaluates is what a load serialized into each model's `python_env`: the
    project's own functions as source, its own constants as values, and no import of a
    project module (which would run whatever module of that name the process holds)."""
    from dagctl_dagster.config import ProjectConfig
    from dagctl_dagster.sqlmesh.context import load_context, single_location

    copy = prepare_copy(FIXTURE, tmp_path / "copy")
    found: dict[str, dict[str, str]] = {}
    errors: list[BaseException] = []

    def load(project: str) -> None:
        try:
            directory = copy / project
            location = single_location(directory, ProjectConfig(name=project, framework="sqlmesh", path=str(directory)))
            context = load_context(location)
            try:
                env = {
                    **context.get_model(f"{project}.scaled").python_env,
                    **context.get_model(f"{project}.tagged").python_env,
                }
                found[project] = {name: executable.payload for name, executable in env.items()}
            finally:
                context.close()
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=load, args=(project,)) for project in PROJECTS]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert found["alpha"]["FACTOR"] == "10" and found["beta"]["FACTOR"] == "100"
    assert "alpha-" in found["alpha"]["tag"] and "beta:" in found["beta"]["tag"]
    for project, env in found.items():
        imports = [payload for payload in env.values() if payload.startswith(("import ", "from "))]
        assert not [line for line in imports if "helpers" in line or "macros" in line], (project, imports)


# --- custom materializations: found by name in the whole process ----------------------------------

MATERIALIZATION = """from __future__ import annotations

import typing as t

from sqlmesh import CustomMaterialization, Model


class Stamped(CustomMaterialization):
    NAME = "stamped"

    def insert(
        self, table_name: str, query_or_df: t.Any, model: Model, is_first_insert: bool, render_kwargs: t.Any, **kwargs: t.Any
    ) -> None:
        self.adapter.replace_query(table_name, query_or_df)
        self.adapter.execute(f"UPDATE {table_name} SET n = n + OFFSET")
"""


def _with_materializations(copy: Path, offsets: dict[str, int]) -> Path:
    for project, offset in offsets.items():
        (copy / project / "materializations").mkdir()
        (copy / project / "materializations" / "stamped.py").write_text(MATERIALIZATION.replace("OFFSET", str(offset)))
        (copy / project / "models" / "stamped.sql").write_text(
            f"MODEL (name {project}.stamped, kind CUSTOM (materialization 'stamped'));\n\nSELECT n FROM {project}.numbers\n"
        )
    return copy


@pytest.mark.timeout(600)
def test_a_materialization_name_with_other_code_in_two_projects_is_refused_naming_both_files(tmp_path: Path):
    """SQLMesh resolves a custom materialization by name among every class the process holds,
    at evaluation too: both projects' models would run one project's class. Refused instead."""
    copy = _with_materializations(prepare_copy(FIXTURE, tmp_path / "copy"), {"alpha": 1000, "beta": 2000})
    result = _definitions_result(copy / ".dagctl" / "config.yaml", tmp_path)
    assert not result.ok, result.describe()
    error = (result.first_error() or "") + result.output
    assert "project 'beta'" in error and "custom materialization 'stamped'" in error, result.describe()
    assert str(copy / "alpha" / "materializations" / "stamped.py") in error, result.describe()
    assert str(copy / "beta" / "materializations" / "stamped.py") in error, result.describe()


@pytest.mark.timeout(600)
def test_the_same_materialization_copied_into_two_projects_loads(tmp_path: Path):
    copy = _with_materializations(prepare_copy(FIXTURE, tmp_path / "copy"), {"alpha": 1000, "beta": 1000})
    result = _definitions_result(copy / ".dagctl" / "config.yaml", tmp_path)
    assert result.ok, result.describe()
    assets = json.loads(result.output.strip().splitlines()[-1])["assets"]
    assert {"alpha/stamped", "beta/stamped"} <= set(assets)


def test_a_load_sees_the_projects_module_and_the_process_gets_its_own_back(tmp_path: Path):
    import sys
    import types

    from sqlmesh.utils import sys_path

    from dagctl_dagster.sqlmesh.imports import own_modules, project_module

    project = tmp_path / "project"
    (project / "helpers").mkdir(parents=True)
    (project / "helpers" / "__init__.py").write_text("VALUE = 'project'\n")
    host = types.ModuleType("helpers")
    host.VALUE = "host"  # type: ignore[attr-defined]
    sys.modules["helpers"] = host
    try:
        with own_modules([project]), sys_path(project):
            import helpers

            assert helpers.VALUE == "project"
        assert sys.modules["helpers"] is host
        assert project_module([project], "helpers").VALUE == "project"
    finally:
        sys.modules.pop("helpers", None)


def test_a_module_of_the_projects_own_directory_stays_through_its_load(tmp_path: Path):
    """A project at the root of the repository whose code the host imports (a package beside
    `definitions.py`) keeps that very module: a load swaps out only modules from elsewhere."""
    import sys
    import types

    from dagctl_dagster.sqlmesh.imports import own_modules

    project = tmp_path / "project"
    (project / "platform_code").mkdir(parents=True)
    (project / "platform_code" / "__init__.py").write_text("")
    own = types.ModuleType("platform_code")
    own.__file__ = str(project / "platform_code" / "__init__.py")
    sys.modules["platform_code"] = own
    try:
        with own_modules([project]):
            assert sys.modules["platform_code"] is own
        assert sys.modules["platform_code"] is own
    finally:
        sys.modules.pop("platform_code", None)
