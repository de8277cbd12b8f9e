"""A location of many projects loads as the webserver and the daemon load it: the whole
repository, every job, schedule and sensor, with every name a project contributes carrying
that project (issue 26). One job alone (`dagster job execute -j`) never builds the repository,
so only these tests see a name two projects share."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml
from projects.platform_location import FIDELITY, PROJECTS, write_platform_location
from test_code_location import dagster
from webserver import WORKSPACE_LOCATIONS, graphql_when, running_webserver

from dagctl_dagster.config import ConfigError, load_config
from dagctl_dagster.definitions import load_definitions
from dagctl_dagster.names import PROJECT_TAG
from dagctl_dagster.run_identity import (
    LOCATION_JOBS,
    LOCATION_SENSORS,
    PAUSE_OP,
    STATE_OBSERVATION_SCHEDULE,
    project_of_run,
)

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def platform_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One deployment for the module: its tests only read it (validate it, load it, serve it).
    The first load writes the SQLMesh projects' translation caches and the dbt manifests beside
    the projects, as a deployment's first code server does; later loads read them."""
    return write_platform_location(tmp_path_factory.mktemp("location") / "platform")


@pytest.fixture
def platform(platform_root: Path, dagster_home: Path, monkeypatch) -> Path:
    monkeypatch.chdir(platform_root)
    return platform_root


def platform_env(root: Path, dagster_home: Path) -> dict[str, str]:
    return dict(os.environ, DAGSTER_HOME=str(dagster_home), DAGCTL_CONFIG=str(root / ".dagctl" / "config.yaml"))


def test_the_repository_of_many_projects_validates_as_the_daemon_loads_it(platform: Path, dagster_home: Path):
    result = dagster(
        ["definitions", "validate", "-w", "workspace.yaml"], platform, platform_env(platform, dagster_home)
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Validation successful" in result.stdout + result.stderr


def test_every_name_a_project_contributes_carries_it_and_maps_back(platform: Path):
    loaded = load_config(platform / ".dagctl" / "config.yaml")
    defs = load_definitions(loaded.path)
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()

    def owner(name: str) -> str | None:
        project = project_of_run(loaded.config, name, {}).project
        return project.name if project else None

    jobs = [job for job in repo.get_all_jobs() if not job.name.startswith("__ASSET_JOB")]
    project_jobs = [job for job in jobs if job.name not in LOCATION_JOBS]
    assert {owner(job.name) for job in project_jobs} == set(PROJECTS)
    for job in project_jobs:
        assert project_of_run(loaded.config, job.name, job.tags).project is not None, job.name
        assert job.tags[PROJECT_TAG] == owner(job.name), job.name
        for node in job.all_node_defs:
            assert owner(node.name) == owner(job.name), f"op {node.name} of job {job.name}"

    ops = {node.name: node for job in jobs for node in job.all_node_defs}
    for name, node in ops.items():
        if PROJECT_TAG in node.tags:
            assert owner(name) == node.tags[PROJECT_TAG], name
        else:
            assert name == PAUSE_OP or name.startswith("dagctl__"), f"op {name} names no project"

    for schedule in repo.schedule_defs:
        if schedule.name != STATE_OBSERVATION_SCHEDULE:
            assert owner(schedule.name) == owner(schedule.job_name), schedule.name
    assert {sensor.name for sensor in repo.sensor_defs} == LOCATION_SENSORS

    framework_resources = set(repo.get_top_level_resources()) - {"slack", "io_manager"}
    assert {owner(key) for key in framework_resources} <= set(PROJECTS)
    observed = {key for key in repo.asset_graph.get_all_asset_keys() if key.path[0] == "dagctl"}
    assert {key.path[1] for key in observed} == set(PROJECTS)


def test_the_webserver_serves_the_location_without_a_load_error(platform: Path, dagster_home: Path):
    with running_webserver(platform, platform_env(platform, dagster_home)) as port:
        served = graphql_when(
            port,
            WORKSPACE_LOCATIONS,
            lambda data: all(e["locationOrLoadError"] is not None for e in data["workspaceOrError"]["locationEntries"]),
            "the webserver to load the location",
        )
    (entry,) = served["workspaceOrError"]["locationEntries"]
    location = entry["locationOrLoadError"]
    assert location["__typename"] == "RepositoryLocation", location.get("message")
    (repository,) = location["repositories"]
    jobs = {job["name"] for job in repository["jobs"]}
    for name, (framework, _, _) in PROJECTS.items():
        assert f"{name}_run" in jobs
        assert (f"{name}_plan" if framework == "sqlmesh" else f"{name}_deploy") in jobs


def _two_projects_on_one_state(root: Path, *, second_schema: str | None) -> Path:
    """Two copies of the `init_duckdb` fixture whose gateways keep state in one DuckDB file."""
    state = root / "shared_state.duckdb"
    for name, schema in (("first", None), ("second", second_schema)):
        project_dir = shutil.copytree(FIDELITY / "init_duckdb" / "analytics", root / name)
        for sql in [*project_dir.rglob("*.sql"), *project_dir.rglob("*.yaml")]:  # models of their own
            sql.write_text(sql.read_text().replace("sqlmesh_example", f"{name}_example"))
        config = yaml.safe_load((project_dir / "config.yaml").read_text())
        for gateway in config["gateways"].values():
            gateway["state_connection"] = {"type": "duckdb", "database": str(state)}
            if schema:
                gateway["state_schema"] = schema
        (project_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (root / ".dagctl").mkdir()
    projects = [{"name": n, "framework": "sqlmesh", "path": n} for n in ("first", "second")]
    (root / ".dagctl" / "config.yaml").write_text(yaml.safe_dump({"version": 1, "projects": projects}))
    return root / ".dagctl" / "config.yaml"


def test_two_projects_sharing_one_environment_of_one_state_are_refused(tmp_path: Path):
    config = _two_projects_on_one_state(tmp_path / "shared", second_schema=None)
    with pytest.raises(ConfigError) as refused:
        load_definitions(config)
    message = str(refused.value)
    assert "'first' and 'second'" in message and "state_schema" in message and "\n" not in message

    config = _two_projects_on_one_state(tmp_path / "apart", second_schema="sqlmesh_second")
    dg.Definitions.validate_loadable(load_definitions(config))
