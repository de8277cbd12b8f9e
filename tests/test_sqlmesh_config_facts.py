"""A load whose SQLMesh projects did not change reads their config facts (the multi-repository
``project:`` name, where state lives) from a cache, without importing SQLMesh; any change to
what a config depends on is seen on the next load (issue 26)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml
from projects.platform_location import FIDELITY

from dagctl_dagster.config import ConfigError, ProjectConfig
from dagctl_dagster.definitions import load_definitions
from dagctl_dagster.errors import ProjectLoadError
from dagctl_dagster.sqlmesh import config_facts as config_facts_module
from dagctl_dagster.sqlmesh.config_facts import config_facts
from dagctl_dagster.sqlmesh.translation_cache import CACHE_DIR_ENV, CACHE_ENV

pytestmark = pytest.mark.timeout(600)

SCHEMA_VARIABLE = "DAGCTL_TEST_STATE_SCHEMA"

LOAD_SCRIPT = """
import json, sys
from dagctl_dagster.definitions import load_definitions
defs = load_definitions(sys.argv[1])
keys = sorted(key.to_user_string() for key in defs.resolve_all_asset_keys())
print(json.dumps({"sqlmesh_imported": "sqlmesh" in sys.modules, "keys": keys}))
"""


@pytest.fixture(autouse=True)
def _cache_in_projects(monkeypatch) -> None:
    for name in (CACHE_ENV, CACHE_DIR_ENV):
        monkeypatch.delenv(name, raising=False)


def _sqlmesh_project(root: Path, name: str, state: Path, schema: str | None) -> Path:
    """A copy of the `init_duckdb` fixture with models of its own, keeping state in ``state``."""
    project_dir = shutil.copytree(FIDELITY / "init_duckdb" / "analytics", root / name)
    for path in [*project_dir.rglob("*.sql"), *project_dir.rglob("*.yaml")]:
        path.write_text(path.read_text().replace("sqlmesh_example", f"{name}_example"))
    _edit_gateways(project_dir, state_connection={"type": "duckdb", "database": str(state)}, state_schema=schema)
    return project_dir


def _edit_gateways(project_dir: Path, **fields: object) -> None:
    config = yaml.safe_load((project_dir / "config.yaml").read_text())
    for gateway in config["gateways"].values():
        for name, value in fields.items():
            if value is None:
                gateway.pop(name, None)
            else:
                gateway[name] = value
    (project_dir / "config.yaml").write_text(yaml.safe_dump(config))


def _edit_config(project_dir: Path, **fields: object) -> None:
    config = yaml.safe_load((project_dir / "config.yaml").read_text())
    config.update(fields)
    (project_dir / "config.yaml").write_text(yaml.safe_dump(config))


def _two_projects(root: Path, *, second_schema: str | None) -> Path:
    state = root / "state.duckdb"
    _sqlmesh_project(root, "first", state, None)
    _sqlmesh_project(root, "second", state, second_schema)
    (root / ".dagctl").mkdir()
    projects = [{"name": n, "framework": "sqlmesh", "path": n} for n in ("first", "second")]
    (root / ".dagctl" / "config.yaml").write_text(yaml.safe_dump({"version": 1, "projects": projects}))
    return root / ".dagctl" / "config.yaml"


def _cached_facts(project_dir: Path) -> list[Path]:
    return list((project_dir / ".cache").rglob("config-*.pickle"))


def _load_in_subprocess(config: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in {CACHE_ENV, CACHE_DIR_ENV}}
    result = subprocess.run(
        [sys.executable, "-c", LOAD_SCRIPT, str(config)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_warm_load_of_two_sqlmesh_projects_does_not_import_sqlmesh(tmp_path: Path):
    config = _two_projects(tmp_path, second_schema="sqlmesh_second")
    cold = _load_in_subprocess(config)
    warm = _load_in_subprocess(config)
    assert cold["sqlmesh_imported"]
    assert not warm["sqlmesh_imported"]
    assert warm["keys"] == cold["keys"] and cold["keys"]


def test_a_load_reads_each_projects_config_facts_once(tmp_path: Path, monkeypatch):
    """Each read hashes every file of the project; the location of a multi-repository group
    asks for the facts of every member, and a load asks for each project's location often."""
    config = _two_projects(tmp_path, second_schema="sqlmesh_second")
    for repo in ("repo_1", "repo_2"):
        shutil.copytree(FIDELITY / "multi_repo" / repo, tmp_path / "multi" / repo)
    settings = yaml.safe_load(config.read_text())
    settings["projects"] += [{"name": r, "framework": "sqlmesh", "path": f"multi/{r}"} for r in ("repo_1", "repo_2")]
    config.write_text(yaml.safe_dump(settings))
    reads: list[str] = []
    read = config_facts_module.config_facts

    def counted(project_dir: Path, project: ProjectConfig):
        reads.append(project.name)
        return read(project_dir, project)

    monkeypatch.setattr(config_facts_module, "config_facts", counted)
    for _ in range(2):  # cold, then warm: a new load reads them again
        reads.clear()
        defs = load_definitions(config)
        assert sorted(reads) == ["first", "repo_1", "repo_2", "second"]
    dg.Definitions.validate_loadable(defs)


def test_a_changed_state_schema_is_seen_on_the_next_load(tmp_path: Path):
    config = _two_projects(tmp_path, second_schema="sqlmesh_second")
    dg.Definitions.validate_loadable(load_definitions(config))
    dg.Definitions.validate_loadable(load_definitions(config))  # warm

    _edit_gateways(tmp_path / "second", state_schema=None)
    with pytest.raises(ConfigError) as refused:
        load_definitions(config)
    assert "'first' and 'second'" in str(refused.value) and "state_schema" in str(refused.value)

    _edit_gateways(tmp_path / "second", state_schema="sqlmesh_again")
    dg.Definitions.validate_loadable(load_definitions(config))


def test_a_state_schema_from_an_environment_variable_is_seen(tmp_path: Path, monkeypatch):
    monkeypatch.setenv(SCHEMA_VARIABLE, "sqlmesh_second")
    config = _two_projects(tmp_path, second_schema=f'{{{{ env_var("{SCHEMA_VARIABLE}") }}}}')
    dg.Definitions.validate_loadable(load_definitions(config))

    monkeypatch.setenv(SCHEMA_VARIABLE, "sqlmesh")
    with pytest.raises(ConfigError, match="'first' and 'second'"):
        load_definitions(config)


def test_a_changed_project_name_is_seen_on_the_next_load(tmp_path: Path, monkeypatch):
    project_dir = _sqlmesh_project(tmp_path, "shop", tmp_path / "state.duckdb", None)
    project = ProjectConfig(name="shop", framework="sqlmesh", path=str(project_dir))
    assert config_facts(project_dir, project).sqlmesh_project == ""
    assert _cached_facts(project_dir)
    assert config_facts(project_dir, project).sqlmesh_project == ""  # warm

    _edit_config(project_dir, project="shop_repo")
    assert config_facts(project_dir, project).sqlmesh_project == "shop_repo"

    monkeypatch.setenv("SQLMESH__PROJECT", "from_the_environment")  # SQLMesh's config variables
    assert config_facts(project_dir, project).sqlmesh_project == "from_the_environment"


def test_a_config_that_does_not_load_is_not_cached(tmp_path: Path):
    project_dir = _sqlmesh_project(tmp_path, "shop", tmp_path / "state.duckdb", None)
    project = ProjectConfig(name="shop", framework="sqlmesh", path=str(project_dir))
    (project_dir / "config.yaml").write_text("gateways: [not, a, mapping]\n")
    for _ in range(2):
        with pytest.raises(ProjectLoadError, match="shop"):
            config_facts(project_dir, project)
    assert not _cached_facts(project_dir)
