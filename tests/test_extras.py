"""What a config needs beyond the core, and the one-line error when it is not installed.

The error for an extra that is really missing is shown on an environment without it
(tests/test_wheel_install.py); here, a dbt adapter no extra brings (dbt-snowflake) is missing
from the repository's environment for real.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from conftest import copy_repository, venv_command

from dagctl_dagster.config import ConfigError, load_config
from dagctl_dagster.extras import Need, check_config_extras, config_needs, is_installed

SQLMESH = "  - {name: sm, framework: sqlmesh, path: examples/sqlmesh_project, gateway: local}\n"
DBT = "  - {name: marts, framework: dbt, path: examples/dbt_project, target: dev}\n"


def config(repo: Path, *projects: str, extra: str = "") -> Path:
    path = repo / ".dagctl" / "config.yaml"
    path.write_text("version: 1\n" + extra + "projects:\n" + "".join(projects))
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return copy_repository(tmp_path / "repo")


def needs(path: Path) -> list[Need]:
    return config_needs(load_config(path, check_paths=False))


def test_a_sqlmesh_project_on_duckdb_needs_only_the_core(repo: Path):
    assert needs(config(repo, SQLMESH)) == []


def test_a_dbt_project_needs_the_dbt_extra_and_the_extra_of_its_adapter(repo: Path):
    assert needs(config(repo, SQLMESH, DBT)) == [
        Need("projects[1].framework", "dbt project 'marts'", "dagster_dbt", "'dagctl-dagster[dbt]'"),
        Need(
            "projects[1].target",
            "dbt project 'marts' (target type `duckdb`)",
            "dbt.adapters.duckdb",
            "'dagctl-dagster[duckdb]'",
        ),
    ]


def test_a_missing_dbt_adapter_is_one_error_naming_its_package(repo: Path):
    profiles = repo / "examples" / "dbt_project" / "profiles.yml"
    profiles.write_text("dbt_example:\n  target: dev\n  outputs:\n    dev: {type: snowflake, account: x}\n")
    assert not is_installed("dbt.adapters.snowflake")
    path = config(repo, DBT)
    with pytest.raises(ConfigError) as raised:
        check_config_extras(load_config(path, check_paths=False))
    assert str(raised.value) == (
        f"{path}: projects[0].target: dbt project 'marts' (target type `snowflake`) needs dbt-snowflake, "
        "which is not installed: pip install dbt-snowflake"
    )

    validate = subprocess.run(
        [venv_command("dagctl-dagster"), "validate", "--config-only", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert validate.returncode == 1
    assert validate.stderr.splitlines() == [f"error: {raised.value}"]


def test_a_sqlmesh_gateway_on_postgres_needs_the_postgres_extra(repo: Path):
    project = repo / "examples" / "pg_project"
    (project / "models").mkdir(parents=True)
    (project / "config.yaml").write_text(
        "gateways:\n  local: {connection: {type: duckdb}}\n"
        "  warehouse:\n    connection: {type: postgres, host: db}\n    state_connection: {type: duckdb}\n"
        "default_gateway: local\nmodel_defaults: {dialect: duckdb}\n"
    )
    pg = "  - {name: pg, framework: sqlmesh, path: examples/pg_project, gateway: warehouse}\n"
    local = "  - {name: lo, framework: sqlmesh, path: examples/pg_project}\n"
    assert needs(config(repo, pg, local)) == [
        Need(
            "projects[0].gateway",
            "SQLMesh project 'pg' (a postgres connection)",
            "psycopg2",
            "'dagctl-dagster[postgres]'",
        )
    ]


def test_a_slack_channel_anywhere_needs_the_slack_extra(repo: Path):
    top = needs(config(repo, SQLMESH, extra="alerts: {warning_channel: '#w'}\n"))
    assert top == [Need("alerts.warning_channel", "Slack alerting", "dagster_slack", "'dagctl-dagster[slack]'")]
    per_project = SQLMESH.replace("gateway: local}", "gateway: local, alerts: {page_channel: '#p'}}")
    assert [n.field for n in needs(config(repo, per_project))] == ["projects[0].alerts.page_channel"]


def test_a_postgres_claim_store_needs_the_postgres_extra(repo: Path, monkeypatch):
    monkeypatch.setenv("DAGCTL_CLAIMS_URL", "postgresql://u@db/claims")
    assert [n.package for n in needs(config(repo, SQLMESH))] == ["'dagctl-dagster[postgres]'"]
    monkeypatch.setenv("DAGCTL_CLAIMS_URL", "sqlite:////tmp/claims.sqlite")
    assert needs(config(repo, SQLMESH)) == []
