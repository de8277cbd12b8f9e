"""The config-version deploy sensor and the dbt deploy scope, on a real git repository."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest
from git_repo import git, init_repo

from dagctl_dagster.automation.config_sensor import build_config_version_sensor, request_location_reload
from dagctl_dagster.config import load_config
from dagctl_dagster.dbt.deploy import build_dbt_deploy_job
from dagctl_dagster.dbt.deploy_scope import deploy_scope
from dagctl_dagster.project import CodeLocationContext, ProjectDefinitions
from dagctl_dagster.run_identity import CONFIG_VERSION_SENSOR
from dagctl_dagster.sqlmesh.plan import build_plan_job

CONFIG = """\
version: {version}
projects:
  - name: analytics
    framework: sqlmesh
    path: analytics
  - name: guarded
    framework: sqlmesh
    path: analytics
    environment: prod
    protected: true
  - name: shop
    framework: dbt
    path: shop
"""


def _write(repo: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _commit(repo: Path, files: dict[str, str], message: str) -> str:
    _write(repo, files)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = init_repo(tmp_path / "repo")
    _commit(
        repo,
        {
            ".dagctl/config.yaml": CONFIG.format(version=1),
            "analytics/models/a.sql": "SELECT 1 AS x",
            "shop/dbt_project.yml": "name: shop\nprofile: shop\n",
            "shop/models/staging/stg_orders.sql": "select 1 as id",
            "shop/models/marts/customers.sql": "select * from {{ ref('stg_orders') }}",
            "shop/models/marts/schema.yml": "version: 2\nmodels:\n  - name: customers\n",
            "shop/macros/cents.sql": "{% macro cents(x) %}{{ x }} * 100{% endmacro %}",
            "shop/seeds/raw_orders.csv": "id\n1\n",
        },
        "initial",
    )
    return repo


def _sensor(repo: Path) -> dg.SensorDefinition:
    loaded = load_config(repo / ".dagctl" / "config.yaml")
    projects = [ProjectDefinitions(project=p, project_dir=loaded.project_dir(p)) for p in loaded.projects]
    jobs = [
        build_plan_job(loaded, p) if p.framework == "sqlmesh" else build_dbt_deploy_job(loaded, p)
        for p in loaded.projects
    ]
    return build_config_version_sensor(CodeLocationContext(loaded=loaded, projects=projects), jobs)


def _tick(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, cursor: str | None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, sensor_name=CONFIG_VERSION_SENSOR)
    return sensor.evaluate_tick(context)


def _set_version(repo: Path, version: int, commit: bool = True, extra: dict[str, str] | None = None) -> str:
    files = {".dagctl/config.yaml": CONFIG.format(version=version), **(extra or {})}
    if commit:
        return _commit(repo, files, f"version {version}")
    _write(repo, files)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def _baseline(repo: Path, instance) -> tuple[dg.SensorDefinition, str]:
    sensor = _sensor(repo)
    first = _tick(sensor, instance, None)
    return sensor, first.cursor


def test_first_tick_records_the_baseline_and_deploys_nothing(repo, instance):
    sensor = _sensor(repo)
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == 30
    result = _tick(sensor, instance, None)
    assert result.run_requests == []
    assert "baseline" in result.skip_message
    assert json.loads(result.cursor) == {"version": "1", "commit": git(repo, "rev-parse", "HEAD")}
    again = _tick(sensor, instance, result.cursor)
    assert again.run_requests == []
    assert again.skip_message == "version 1 is already deployed"


def test_interval_comes_from_the_environment(repo, monkeypatch):
    monkeypatch.setenv("DAGCTL_SENSOR_INTERVAL_SECONDS", "3")
    assert _sensor(repo).minimum_interval_seconds == 3


def test_new_version_deploys_every_project_with_idempotent_run_keys(repo, instance):
    sensor, cursor = _baseline(repo, instance)
    head = _set_version(
        repo,
        2,
        extra={"shop/models/staging/stg_orders.sql": "select 2 as id", "analytics/models/a.sql": "SELECT 2 AS x"},
    )
    result = _tick(sensor, instance, cursor)
    requests = {r.job_name: r for r in result.run_requests}
    assert sorted(requests) == ["analytics_plan", "guarded_plan", "shop_deploy"]
    assert json.loads(result.cursor) == {"version": "2", "commit": head}

    plan = requests["analytics_plan"]
    assert plan.run_key == "deploy:analytics:2"
    assert plan.run_config == {"ops": {"analytics_plan_op": {"config": {"environment": "prod", "auto_apply": True}}}}
    assert plan.tags["dagctl/project"] == "analytics"
    assert plan.tags["dagctl/deploy-version"] == "2"
    assert plan.tags["dagctl/deploy-commit"] == head

    dbt = requests["shop_deploy"]
    assert dbt.run_key == "deploy:shop:2"
    assert dbt.run_config["ops"]["shop_deploy_op"]["config"] == {
        "select": "stg_orders+",
        "changed_files": ["models/staging/stg_orders.sql"],
    }
    assert dbt.tags["dagctl/changed-files"] == "models/staging/stg_orders.sql"
    assert dbt.tags["dagctl/deploy-scope"].startswith("dbt build --select stg_orders+")

    # A restarted sensor that re-evaluates from the same cursor asks for the same run keys,
    # which Dagster launches only once.
    replay = _tick(sensor, instance, cursor)
    assert sorted(r.run_key for r in replay.run_requests) == sorted(r.run_key for r in result.run_requests)


def test_protected_project_gets_a_dry_run_only(repo, instance):
    sensor, cursor = _baseline(repo, instance)
    _set_version(repo, 2)
    guarded = next(r for r in _tick(sensor, instance, cursor).run_requests if r.job_name == "guarded_plan")
    assert guarded.run_config["ops"]["guarded_plan_op"]["config"]["auto_apply"] is False
    assert "dry run" in guarded.tags["dagctl/deploy-scope"]


def test_macro_change_deploys_a_full_dbt_build(repo, instance):
    sensor, cursor = _baseline(repo, instance)
    _set_version(repo, 2, extra={"shop/macros/cents.sql": "{% macro cents(x) %}{{ x }} * 1000{% endmacro %}"})
    dbt = next(r for r in _tick(sensor, instance, cursor).run_requests if r.job_name == "shop_deploy")
    assert dbt.run_config["ops"]["shop_deploy_op"]["config"]["select"] == ""
    assert dbt.tags["dagctl/deploy-scope"] == "full build (macros/cents.sql changed)"


def test_version_bump_without_dbt_changes_deploys_no_dbt_run(repo, instance):
    sensor, cursor = _baseline(repo, instance)
    _set_version(repo, 2)
    jobs = sorted(r.job_name for r in _tick(sensor, instance, cursor).run_requests)
    assert jobs == ["analytics_plan", "guarded_plan"]


def test_malformed_config_skips_with_the_error_and_keeps_the_last_good_version(repo, instance):
    sensor, cursor = _baseline(repo, instance)
    config = repo / ".dagctl" / "config.yaml"
    config.write_text("version: 2\nprojects: [\n")
    result = _tick(sensor, instance, cursor)
    assert result.run_requests == []
    assert str(config) in result.skip_message
    assert "not valid YAML" in result.skip_message
    assert "version 1 stays deployed" in result.skip_message
    assert result.cursor == cursor  # the last good version stays the cursor

    config.write_text(CONFIG.format(version=2).replace("protected: true", "protected: maybe"))
    invalid = _tick(sensor, instance, cursor)
    assert invalid.run_requests == []
    assert "projects[1].protected (project 'guarded')" in invalid.skip_message

    _set_version(repo, 2, commit=False)
    fixed = _tick(sensor, instance, cursor)
    assert len(fixed.run_requests) == 2
    assert json.loads(fixed.cursor)["version"] == "2"


def test_reload_failure_is_reported_not_raised(repo, monkeypatch):
    from tests.conftest import free_port

    monkeypatch.setenv("DAGSTER_WEBSERVER_URL", f"http://127.0.0.1:{free_port()}")
    context = dg.build_sensor_context(sensor_name=CONFIG_VERSION_SENSOR)
    message = request_location_reload(context)
    assert message.startswith("could not ask http://127.0.0.1:")
    assert "reload code location 'dagctl'" in message


# -- scope rules -------------------------------------------------------------------------


def test_scope_of_model_seed_and_schema_changes(repo):
    base = git(repo, "rev-parse", "HEAD")
    _commit(
        repo,
        {
            "shop/models/marts/customers.sql": "select 1 as id",
            "shop/seeds/raw_orders.csv": "id\n2\n",
            "shop/models/marts/schema.yml": "version: 2\nmodels:\n  - name: customers\n  - name: orders\n",
            "shop/README.md": "docs only",
            "analytics/models/a.sql": "SELECT 3 AS x",  # another project's change
        },
        "edit",
    )
    scope = deploy_scope(repo / "shop", base)
    assert scope.full_build is False
    assert scope.select == "customers+ orders+ raw_orders+"
    assert scope.changed_files == (
        "README.md",
        "models/marts/customers.sql",
        "models/marts/schema.yml",
        "seeds/raw_orders.csv",
    )


@pytest.mark.parametrize("changed", ["dbt_project.yml", "profiles.yml", "packages.yml", "macros/cents.sql"])
def test_scope_of_project_wide_changes_is_a_full_build(repo, changed):
    base = git(repo, "rev-parse", "HEAD")
    _commit(repo, {f"shop/{changed}": "# changed\n", "shop/models/marts/customers.sql": "select 3"}, "edit")
    scope = deploy_scope(repo / "shop", base)
    assert scope.full_build is True
    assert scope.select is None
    assert scope.reason == f"{changed} changed"


def test_unknown_base_commit_is_a_full_build(repo):
    scope = deploy_scope(repo / "shop", "0" * 40)
    assert scope.full_build is True
    assert "git diff against 000000000000 failed" in scope.reason
    assert deploy_scope(repo / "shop", None).reason == "no previously deployed commit is known"
