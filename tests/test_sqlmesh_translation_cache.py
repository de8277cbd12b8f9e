"""The translation cache: a load with unchanged files skips the SQLMesh Context and builds the same assets."""

from __future__ import annotations

import logging
from pathlib import Path

import dagster as dg
import pytest

from dagctl_dagster import ProjectLoadError, sqlmesh_assets
from dagctl_dagster.sqlmesh.translator import DagsterSQLMeshTranslator

CACHE_HIT = "assets from the translation cache"


@pytest.fixture
def project_dir(example_repo: Path, monkeypatch) -> Path:
    monkeypatch.setenv("SQLMESH_EXAMPLE_DB", str(example_repo / "wh.duckdb"))
    return example_repo / "examples" / "sqlmesh_project"


def _summary(assets) -> dict:
    """Everything a load decides about each asset: key, deps, code version, metadata, checks."""
    summary = {}
    for item in assets:
        specs = [item] if isinstance(item, dg.AssetSpec) else list(item.specs)
        checks = (
            []
            if isinstance(item, dg.AssetSpec)
            else sorted((c.name, c.blocking, c.description) for c in item.check_specs)
        )
        for spec in specs:
            summary[spec.key.to_user_string()] = {
                "deps": sorted(d.asset_key.to_user_string() for d in spec.deps),
                "code_version": spec.code_version,
                "group": spec.group_name,
                "kinds": sorted(spec.kinds),
                "metadata": {k: str(v) for k, v in spec.metadata.items()},
                "checks": checks,
            }
    return summary


def _cache_files(project_dir: Path) -> list[Path]:
    return sorted((project_dir / ".cache" / "dagctl").glob("assets-*.pickle"))


def _load(project_dir: Path, caplog, translator=None) -> tuple[dict, bool]:
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="dagctl_dagster.sqlmesh.asset_factory"):
        assets = sqlmesh_assets(project_dir, name="sqlmesh_example", translator=translator)
    return _summary(assets), CACHE_HIT in caplog.text


def test_unchanged_project_loads_from_the_cache_with_identical_assets(project_dir: Path, caplog):
    first, first_hit = _load(project_dir, caplog)
    second, second_hit = _load(project_dir, caplog)
    assert (first_hit, second_hit) == (False, True)
    assert len(_cache_files(project_dir)) == 1
    assert second == first
    assert first["sqlmesh_example/item_revenue"]["checks"], "the example's audits must survive the cache"
    assert "raw/customers" in first["sqlmesh_example/customers"]["deps"]


def test_editing_a_model_misses_the_cache_and_shows_the_change(project_dir: Path, caplog):
    before, _ = _load(project_dir, caplog)
    model = project_dir / "models" / "daily_revenue.sql"
    model.write_text(model.read_text().replace("SELECT", "SELECT 1 AS added_column,", 1))
    after, hit = _load(project_dir, caplog)
    assert not hit
    assert (
        after["sqlmesh_example/daily_revenue"]["code_version"]
        != before["sqlmesh_example/daily_revenue"]["code_version"]
    )
    assert "added_column" in after["sqlmesh_example/daily_revenue"]["metadata"]["dagster/column_schema"]
    assert "added_column" not in before["sqlmesh_example/daily_revenue"]["metadata"]["dagster/column_schema"]


def test_an_environment_variable_the_config_reads_is_part_of_the_key(project_dir: Path, caplog, monkeypatch, tmp_path):
    _load(project_dir, caplog)
    monkeypatch.setenv("SQLMESH_EXAMPLE_DB", str(tmp_path / "other_catalog.duckdb"))
    after, hit = _load(project_dir, caplog)
    assert not hit
    assert len(_cache_files(project_dir)) == 2
    assert after["sqlmesh_example/daily_revenue"]["metadata"]["dagster/table_name"].startswith("other_catalog.")


def test_a_model_broken_after_a_cached_load_is_still_a_load_error(project_dir: Path, caplog):
    _load(project_dir, caplog)
    (project_dir / "models" / "broken.sql").write_text(
        "MODEL (name sqlmesh_example.broken, kind FULL);\nSELECT FROM WHERE (\n"
    )
    with pytest.raises(ProjectLoadError) as excinfo:
        sqlmesh_assets(project_dir, name="sqlmesh_example")
    assert "broken.sql" in str(excinfo.value)


class PrefixedTranslator(DagsterSQLMeshTranslator):
    def get_asset_key(self, model) -> dg.AssetKey:
        return super().get_asset_key(model).with_prefix("warehouse")


def test_a_different_translator_gets_its_own_entry(project_dir: Path, caplog):
    _load(project_dir, caplog)
    prefixed, hit = _load(project_dir, caplog, translator=PrefixedTranslator())
    assert not hit
    assert "warehouse/sqlmesh_example/daily_revenue" in prefixed


def test_an_unwritable_cache_directory_only_costs_the_cache(project_dir: Path, caplog, monkeypatch):
    (project_dir / ".cache").mkdir(exist_ok=True)
    (project_dir / ".cache" / "dagctl").write_text("not a directory")
    first, _ = _load(project_dir, caplog)
    second, hit = _load(project_dir, caplog)
    assert not hit and second == first
    monkeypatch.setenv("DAGCTL_ASSET_CACHE", "off")
    (project_dir / ".cache" / "dagctl").unlink()
    _load(project_dir, caplog)
    _, hit = _load(project_dir, caplog)
    assert not hit and _cache_files(project_dir) == []


def test_a_shared_cache_dir_serves_a_fresh_clone_at_the_same_path(project_dir: Path, caplog, monkeypatch, tmp_path):
    """A Kubernetes run pod clones the project afresh (no .cache); a shared volume still serves it."""
    import shutil

    shared = tmp_path / "shared-cache"
    monkeypatch.setenv("DAGCTL_ASSET_CACHE_DIR", str(shared))
    first, first_hit = _load(project_dir, caplog)
    assert _cache_files(project_dir) == [], "with a shared directory, nothing is written into the project"
    assert [p.parent.name for p in shared.glob("*/assets-*.pickle")] == ["sqlmesh_example"]

    pristine = tmp_path / "pristine"
    shutil.copytree(project_dir, pristine, ignore=shutil.ignore_patterns(".cache"))
    shutil.rmtree(project_dir)
    shutil.copytree(pristine, project_dir)  # the same commit, cloned again at the same path
    second, second_hit = _load(project_dir, caplog)
    assert (first_hit, second_hit) == (False, True)
    assert second == first

    moved = tmp_path / "elsewhere" / project_dir.name
    shutil.copytree(pristine, moved)  # another path: its metadata names other files, so no hit
    _, moved_hit = _load(moved, caplog)
    assert not moved_hit
