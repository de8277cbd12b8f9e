"""End to end: the real dagster-daemon ticks the deploy sensor and runs the deploy jobs."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pytest
import yaml
from daemon import running_daemon
from waiting import wait_for

from dagctl_dagster.run_identity import CONFIG_VERSION_SENSOR

NEVER = "0 0 1 1 *"  # keeps the run schedules from firing during the test
# The SQLMesh project joins once its assets serialize for the daemon (today the translator's
# `sqlmesh/kind` metadata is a ModelKindName enum, which Dagster refuses); add "sqlmesh_example" then.
DEPLOYED_PROJECTS = {"dbt_example": "dbt_example_deploy", "sqlmesh_example": "sqlmesh_example_plan"}


def _sensor_cursor(instance: dg.DagsterInstance) -> str | None:
    for state in instance.all_instigator_state():
        if state.name == CONFIG_VERSION_SENSOR and state.instigator_data is not None:
            return state.instigator_data.cursor
    return None


@pytest.mark.timeout(300)
def test_daemon_deploys_when_the_config_version_changes(example_repo: Path, dagster_home: Path, tmp_path: Path):
    config_path = example_repo / ".dagctl" / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["projects"] = [p for p in config["projects"] if p["name"] in DEPLOYED_PROJECTS]
    for project in config["projects"]:
        project["schedule"] = NEVER
        if project["framework"] == "sqlmesh":
            project["janitor_schedule"] = None
            project["state_backup"] = {"enabled": False}
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    env = {
        **os.environ,
        "DAGSTER_HOME": str(dagster_home),
        "SQLMESH_EXAMPLE_DB": str(
            tmp_path / "sqlmesh_warehouse.duckdb"
        ),  # a file named sqlmesh.duckdb would clash with the state schema
        "DBT_EXAMPLE_DB": str(tmp_path / "dbt.duckdb"),
        "DAGCTL_SENSOR_INTERVAL_SECONDS": "1",  # the version change is seen within a second
    }
    env.pop("DAGSTER_WEBSERVER_URL", None)
    with running_daemon(example_repo, env, tmp_path / "daemon.log") as watch:
        with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
            baseline = wait_for(
                lambda: _sensor_cursor(instance),
                "the sensor's baseline tick",
                timeout=180,
                every=0.5,
                **watch,
            )
            assert '"version": "1"' in baseline
            assert instance.get_run_records() == []  # the baseline tick deploys nothing

            config["version"] = 2
            config_path.write_text(yaml.safe_dump(config, sort_keys=False))

            def finished_deploy_runs():
                records = instance.get_run_records(dg.RunsFilter(tags={"dagctl/deploy-version": "2"}))
                done = [r for r in records if r.dagster_run.is_finished]
                expected = len(DEPLOYED_PROJECTS)
                return records if len(records) == expected and len(done) == expected else None

            records = wait_for(finished_deploy_runs, "both deploy runs to finish", timeout=200, every=0.5, **watch)
            runs = {r.dagster_run.job_name: r.dagster_run for r in records}
            assert sorted(runs) == sorted(DEPLOYED_PROJECTS.values())
            for run in runs.values():
                failures = [
                    str(e.dagster_event.event_specific_data)[:3000]
                    for e in instance.all_logs(run.run_id)
                    if e.dagster_event and e.dagster_event.is_failure
                ]
                assert run.status == dg.DagsterRunStatus.SUCCESS, f"{run.job_name} {run.status} {failures}"
            if "sqlmesh_example_plan" in runs:
                assert runs["sqlmesh_example_plan"].tags["dagster/run_key"] == "deploy:sqlmesh_example:2"
                assert (
                    runs["sqlmesh_example_plan"].run_config["ops"]["sqlmesh_example_plan_op"]["config"]["auto_apply"]
                    is True
                )
            assert runs["dbt_example_deploy"].tags["dagster/run_key"] == "deploy:dbt_example:2"
            assert (
                runs["dbt_example_deploy"]
                .tags["dagctl/deploy-scope"]
                .startswith("full build (no previously deployed commit")
            )
            # its artifacts are named like the run job's, so only the newest few are kept
            deploy_id = runs["dbt_example_deploy"].run_id[:7]
            target = example_repo / "examples" / "dbt_project" / "target"
            assert len(list(target.glob(f"dbt_example_deploy_op-{deploy_id}-*/run_results.json"))) == 1
            assert '"version": "2"' in _sensor_cursor(instance)
