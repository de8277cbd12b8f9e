"""When the manifest is reused and when it is re-parsed: the project fingerprint (no dbt process)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dagctl_dagster.dbt.manifest import open_dbt_project, project_fingerprint
from dagctl_dagster.errors import ProjectLoadError

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "dbt_project"


@pytest.fixture
def project_dir(tmp_path: Path) -> Path:
    return Path(
        shutil.copytree(EXAMPLE, tmp_path / "dbt_project", ignore=shutil.ignore_patterns("target", "logs", "*.duckdb"))
    )


def fingerprint(project_dir: Path, target: str | None = "dev") -> str:
    return project_fingerprint(open_dbt_project("p", project_dir, target=target, profiles_dir=None))


def test_fingerprint_is_stable_for_an_unchanged_project(project_dir, monkeypatch):
    monkeypatch.setenv("DBT_EXAMPLE_DB", "a.duckdb")
    first = fingerprint(project_dir)
    # Build output and warehouses are not sources.
    (project_dir / "target" / "run-1").mkdir(parents=True)
    (project_dir / "target" / "run-1" / "run_results.json").write_text("{}")
    (project_dir / "target" / "compiled.sql").write_text("select 1")
    (project_dir / "a.duckdb").write_bytes(b"\0")
    assert fingerprint(project_dir) == first


def test_fingerprint_changes_with_a_model_a_seed_or_the_profile(project_dir, monkeypatch):
    monkeypatch.setenv("DBT_EXAMPLE_DB", "a.duckdb")
    seen = {fingerprint(project_dir)}
    (project_dir / "models" / "marts" / "new_model.sql").write_text("select 1 as x\n")
    seen.add(fingerprint(project_dir))
    with (project_dir / "seeds" / "raw_customers.csv").open("a") as seed:
        seed.write("51,New,Customer\n")
    seen.add(fingerprint(project_dir))
    profiles = project_dir / "profiles.yml"
    profiles.write_text(profiles.read_text().replace("threads: 5", "threads: 4"))
    seen.add(fingerprint(project_dir))
    assert len(seen) == 4


def test_fingerprint_tracks_env_vars_the_project_reads_and_the_target(project_dir, monkeypatch):
    monkeypatch.setenv("DBT_EXAMPLE_DB", "a.duckdb")
    monkeypatch.setenv("UNRELATED_SETTING", "1")
    first = fingerprint(project_dir)

    monkeypatch.setenv("UNRELATED_SETTING", "2")
    assert fingerprint(project_dir) == first
    # The DuckDB path names the database that every node of the manifest lives in.
    monkeypatch.setenv("DBT_EXAMPLE_DB", "b.duckdb")
    assert fingerprint(project_dir) != first
    monkeypatch.setenv("DBT_EXAMPLE_DB", "a.duckdb")
    assert fingerprint(project_dir, target="prod") != first


def test_fingerprint_holds_no_env_var_value(project_dir, monkeypatch):
    monkeypatch.setenv("DBT_EXAMPLE_DB", "s3cr3t-value.duckdb")
    assert "s3cr3t" not in fingerprint(project_dir)
    assert len(fingerprint(project_dir)) == 64


def test_missing_profiles_yml_names_the_file(project_dir):
    (project_dir / "profiles.yml").unlink()
    with pytest.raises(ProjectLoadError) as raised:
        open_dbt_project("marts", project_dir, target=None, profiles_dir=None)
    assert raised.value.file == project_dir / "profiles.yml"
    assert "set `profiles_dir` in the config" in str(raised.value)
