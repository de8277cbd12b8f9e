"""Pausing a model: the real CLI pauses, the real `dagster job execute` skips it and its
downstream while independent models run, and after `resume` the next run does them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import venv_command
from dagster import AssetKey, DagsterEventType, DagsterInstance, EventRecordsFilter
from projects.deployment import plan_without_backfill
from projects.sqlmesh_repo import dagster_env, run_job, write_repository

from dagctl_dagster.names import PAUSED_BY_KEY, PAUSED_KEY, ExecutorSummary

MODELS = {
    "source.sql": "MODEL (name demo.source, kind FULL);\nSELECT range AS id FROM range(5)\n",
    "paused.sql": "MODEL (name demo.paused, kind FULL);\nSELECT id FROM demo.source\n",
    "after_paused.sql": "MODEL (name demo.after_paused, kind FULL);\nSELECT id FROM demo.paused\n",
    "independent.sql": "MODEL (name demo.independent, kind FULL);\nSELECT id FROM demo.source\n",
}


def models_cli(repo: Path, home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [venv_command("dagctl-dagster"), "models", *args, "--config", str(repo / ".dagctl" / "config.yaml")],
        env=dagster_env(home),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _records(home: Path, event_type: DagsterEventType) -> list:
    os.environ["DAGSTER_HOME"] = str(home)
    with DagsterInstance.get() as instance:
        return [r.event_log_entry for r in instance.get_event_records(EventRecordsFilter(event_type), limit=10_000)]


def _materialized(home: Path) -> list[str]:
    return [e.dagster_event.asset_key.to_user_string() for e in _records(home, DagsterEventType.ASSET_MATERIALIZATION)]


def _last_summary(home: Path) -> ExecutorSummary:
    summaries = [
        ExecutorSummary.from_metadata(e.dagster_event.engine_event_data.metadata)
        for e in _records(home, DagsterEventType.ENGINE_EVENT)
        if (e.message or "").startswith("dagctl run summary")
    ]
    return summaries[0]  # newest first


@pytest.mark.timeout(600)
def test_a_paused_model_and_its_downstream_are_skipped_until_resumed(tmp_path: Path):
    repo = write_repository(tmp_path / "repo", MODELS)
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    plan_without_backfill(repo / "project")  # a pause holds back runs; a plan's backfill is SQLMesh's own

    paused = models_cli(
        repo, home, "pause", "--project", "proj", "demo.paused", "--reason", "INC-7 bad feed", "--by", "alice"
    )
    assert paused.returncode == 0, paused.stderr
    listed = models_cli(repo, home, "list")
    assert "demo/paused" in listed.stdout and "alice" in listed.stdout and "INC-7 bad feed" in listed.stdout

    first = run_job(repo, home, tmp_path / "elsewhere")
    assert first.returncode == 0, first.output[-6000:]
    assert sorted(_materialized(home)) == ["demo/independent", "demo/source"]
    assert "demo/paused is paused by alice since" in first.output and "INC-7 bad feed" in first.output
    summary = _last_summary(home)
    assert (summary.skipped_paused, summary.skipped_downstream, summary.executed) == (1, 1, 2)

    # The asset page shows the pause: the latest observation of the asset says so.
    with DagsterInstance.get() as instance:
        [latest] = instance.fetch_observations(AssetKey(["demo", "paused"]), limit=1).records
        metadata = latest.asset_observation.metadata
        assert metadata[PAUSED_KEY].value is True and metadata[PAUSED_BY_KEY].value == "alice"

    resumed = models_cli(repo, home, "resume", "--project", "proj", "demo.paused")
    assert resumed.returncode == 0, resumed.stderr
    assert models_cli(repo, home, "resume", "--project", "proj", "demo.paused").returncode == 1  # not paused now

    second = run_job(repo, home, tmp_path / "elsewhere")
    assert second.returncode == 0, second.output[-6000:]
    assert sorted(_materialized(home)) == sorted(
        ["demo/independent", "demo/source", "demo/paused", "demo/after_paused"]
    )
    assert _last_summary(home).skipped_paused == 0


def test_bad_pause_requests_are_one_clear_error(tmp_path: Path):
    repo = write_repository(tmp_path / "repo", MODELS)
    home = tmp_path / "home"
    home.mkdir()
    unknown = models_cli(repo, home, "pause", "--project", "nope", "demo.paused", "--reason", "x")
    assert unknown.returncode == 1 and "no project named 'nope'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    bare = models_cli(repo, home, "pause", "--project", "proj", "paused", "--reason", "x")
    assert bare.returncode == 1 and "schema.name" in bare.stderr
    empty = models_cli(repo, home, "pause", "--project", "proj", "demo.paused", "--reason", " ")
    assert empty.returncode == 1 and "needs a reason" in empty.stderr
