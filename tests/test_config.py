"""`.dagctl/config.yaml` validation: one clear error naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dagctl_dagster import ConfigError, ProjectLoadError, load_config, load_definitions

VALID = {
    "version": 7,
    "projects": [
        {"name": "analytics", "framework": "sqlmesh", "path": "sqlmesh/analytics"},
        {"name": "marts", "framework": "dbt", "path": "dbt/marts", "target": "prod"},
    ],
}


def write_config(root: Path, content: dict | str) -> Path:
    (root / "sqlmesh" / "analytics").mkdir(parents=True, exist_ok=True)
    (root / "dbt" / "marts").mkdir(parents=True, exist_ok=True)
    path = root / ".dagctl" / "config.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


def test_valid_config_resolves_paths_from_the_repository_root(tmp_path: Path):
    loaded = load_config(write_config(tmp_path, VALID))
    assert loaded.version == "7"
    assert loaded.root == tmp_path.resolve()
    analytics = loaded.config.project("analytics")
    assert loaded.project_dir(analytics) == (tmp_path / "sqlmesh" / "analytics").resolve()
    assert analytics.environment == "prod"
    assert analytics.effective_schedule == "*/15 * * * *"
    assert loaded.config.project("marts").effective_schedule is None


@pytest.mark.parametrize(
    ("mutate", "field", "words"),
    [
        (lambda c: c["projects"][0].update(colour="blue"), "projects[0].colour (project 'analytics')", "unknown key"),
        (lambda c: c["projects"][1].pop("path"), "projects[1].path (project 'marts')", "required field is missing"),
        (lambda c: c["projects"][0].update(framework="spark"), "projects[0].framework", "'spark' is not allowed"),
        (lambda c: c["projects"][1].update(name="analytics"), "projects[1].name", "duplicate project name 'analytics'"),
        (lambda c: c["projects"][1].update(name="dagctl"), "projects[1].name", "'dagctl' is reserved"),
        (lambda c: c["projects"][0].update(schedule="every minute"), "projects[0].schedule", "not a cron expression"),
        (lambda c: c.pop("version"), "version", "required field is missing"),
        (lambda c: c.update(timezone="Mars/Olympus"), "timezone", "not an IANA timezone"),
        (lambda c: c["projects"][0].update(target="prod"), "projects[0]", "`target` is a dbt setting"),
    ],
)
def test_each_config_error_names_file_and_field(tmp_path: Path, mutate, field: str, words: str):
    content = yaml.safe_load(yaml.safe_dump(VALID))
    mutate(content)
    path = write_config(tmp_path, content)
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    message = str(excinfo.value)
    assert message.startswith(f"{path.resolve()}: {field}"), message
    assert words in message
    assert excinfo.value.field is not None and excinfo.value.field.startswith(field.split(" ")[0])


def test_missing_project_directory_is_named(tmp_path: Path):
    content = yaml.safe_load(yaml.safe_dump(VALID))
    content["projects"][0]["path"] = "sqlmesh/typo"
    path = write_config(tmp_path, content)
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert excinfo.value.field == "projects[0].path"
    assert "project 'analytics'" in str(excinfo.value)
    assert str((tmp_path / "sqlmesh" / "typo").resolve()) in str(excinfo.value)


def test_unparseable_yaml_says_where(tmp_path: Path):
    path = write_config(tmp_path, "version: 1\nprojects: [\n  - name: x\n")
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert "not valid YAML (line" in str(excinfo.value)
    assert str(path.resolve()) in str(excinfo.value)


def test_missing_config_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / ".dagctl" / "config.yaml")


def test_sqlmesh_syntax_error_names_project_and_file(example_repo: Path, monkeypatch):
    monkeypatch.setenv("SQLMESH_EXAMPLE_DB", str(example_repo / "wh.duckdb"))
    broken = example_repo / "examples" / "sqlmesh_project" / "models" / "broken.sql"
    broken.write_text("MODEL (name sqlmesh_example.broken, kind FULL);\nSELECT FROM WHERE (\n")
    config = example_repo / ".dagctl" / "config.yaml"
    with pytest.raises(ProjectLoadError) as excinfo:
        load_definitions(config)
    assert excinfo.value.project == "sqlmesh_example"
    assert "broken.sql" in str(excinfo.value)
    # nothing half-built: the warehouse lock is free and the project still loads once fixed
    broken.unlink()
    assert load_definitions(config).get_job_def("sqlmesh_example_run") is not None
