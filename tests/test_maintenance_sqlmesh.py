"""Janitor and state backup jobs on the example SQLMesh project; a backup restores into a fresh state DB."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from dagctl_dagster.config import load_config
from dagctl_dagster.sqlmesh.context import open_context
from dagctl_dagster.sqlmesh.maintenance import (
    backup_file_name,
    build_janitor_job,
    build_state_backup_job,
    prune_backups,
    restore_state,
)


def _output(result: dg.ExecuteInProcessResult, node: str) -> tuple[object, dict]:
    assert result.success
    (event,) = [e for e in result.all_events if e.is_successful_output]
    metadata = {key: value.value for key, value in event.event_specific_data.metadata.items()}
    return result.output_for_node(node), metadata


def _state(context) -> tuple[dict, dict]:
    """Environments (name → snapshot ids) and each snapshot's intervals, as stored in state."""
    environments = {
        env.name: sorted(s.snapshot_id.identifier for s in env.snapshots)
        for env in context.state_sync.get_environments()
    }
    snapshot_ids = [s.snapshot_id for env in context.state_sync.get_environments() for s in env.snapshots]
    intervals = {
        s_id.name: sorted(snapshot.intervals)
        for s_id, snapshot in context.state_sync.get_snapshots(snapshot_ids).items()
    }
    return environments, intervals


@pytest.mark.timeout(240)
def test_janitor_drops_an_expired_environment_and_backup_restores_into_a_fresh_state_db(
    example_repo: Path, tmp_path: Path, monkeypatch
):
    monkeypatch.setenv("SQLMESH_EXAMPLE_DB", str(tmp_path / "warehouse.duckdb"))
    loaded = load_config(example_repo / ".dagctl" / "config.yaml")
    project = loaded.config.project("sqlmesh_example")
    with open_context(loaded, project) as context:
        context.plan("prod", auto_apply=True, no_prompts=True)
        context.plan("dev", auto_apply=True, no_prompts=True, include_unmodified=True)
        context.invalidate_environment("dev")
        before = _state(context)
    assert set(before[0]) == {"prod", "dev"}

    _, janitor = _output(build_janitor_job(loaded, project).execute_in_process(), "sqlmesh_example_janitor_op")
    assert janitor["expired_environments"] == ["dev"]
    assert any(name.endswith("sqlmesh_example__dev") for name in janitor["cleaned_objects"])
    assert janitor["cleaned_object_count"] == len(janitor["cleaned_objects"])

    backups = example_repo / ".dagctl" / "state-backups"
    backups.mkdir(parents=True)
    old = backups / backup_file_name("sqlmesh_example", datetime.now(UTC) - timedelta(days=8))
    old.write_text("{}")
    path, backup = _output(
        build_state_backup_job(loaded, project).execute_in_process(), "sqlmesh_example_state_backup_op"
    )
    path = Path(path)
    assert path.parent == backups
    assert path.name.startswith("sqlmesh_example-state-") and path.name.endswith("Z.json")
    assert backup["environments"] == ["prod"]
    assert backup["snapshot_count"] == 8
    assert backup["pruned"] == [old.name]
    assert sorted(p.name for p in backups.iterdir()) == [path.name]

    with open_context(loaded, project) as context:
        prod_before = _state(context)

    monkeypatch.setenv("SQLMESH_EXAMPLE_DB", str(tmp_path / "fresh.duckdb"))
    with open_context(loaded, project) as fresh:
        assert fresh.state_sync.get_environments() == []
        restore_state(fresh, path)
        assert _state(fresh) == prod_before
    assert sum(len(intervals) for intervals in prod_before[1].values()) > 0  # the comparison covers real intervals


def test_prune_keeps_recent_backups_and_other_projects_files(tmp_path: Path):
    now = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)
    names = {
        "old": backup_file_name("analytics", now - timedelta(days=7, minutes=1)),
        "recent": backup_file_name("analytics", now - timedelta(days=6, hours=23)),
        "other": backup_file_name("marts", now - timedelta(days=30)),
    }
    for name in names.values():
        (tmp_path / name).write_text("{}")
    (tmp_path / "notes.txt").write_text("keep")
    pruned = prune_backups(tmp_path, "analytics", keep_days=7, now=now)
    assert [p.name for p in pruned] == [names["old"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([names["recent"], names["other"], "notes.txt"])
    assert names["old"] == "analytics-state-20261114T025900Z.json"
