"""A warehouse pool (issue 26): overlapping runs of two projects on one warehouse never execute
more models at once than the pool's limit, and nothing is lost or done twice.

Three runs (`pool_a_run` twice, `pool_b_run`) overlap in separate `dagster job execute`
processes on a PostgreSQL Dagster instance, warehouse and state. Each run alone would run up
to five models at once; the pool `warehouse` of `.dagctl/config.yaml` allows two. Every model
evaluation records when it started and ended, so the test reads the most that ran at once.
"""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import yaml
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from projects import overlap_project
from projects.deployment import plan_without_backfill
from test_overlapping_runs import finish, launch

from dagctl_dagster.execution.claims import ClaimStore

PROJECTS = ("pool_a", "pool_b")
POOL = "warehouse"
LIMIT = 2


@pytest.fixture
def pooled_repo(tmp_path: Path, postgres_url: str, postgres_dagster_home: Path, monkeypatch) -> Path:
    repo = overlap_project.create_repository(tmp_path / "repo", postgres_url, projects=PROJECTS)
    config_path = repo / ".dagctl" / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["pools"] = {POOL: LIMIT}
    for project in config["projects"]:
        project["pool"] = POOL
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    monkeypatch.setenv("OVERLAP_PG_URL", postgres_url)
    monkeypatch.delenv("MAX_CONCURRENT_MODELS", raising=False)
    monkeypatch.delenv("DAGCTL_CLAIMS_URL", raising=False)
    for project in PROJECTS:
        plan_without_backfill(repo / f"{project}_project")
    return repo


def pool_waits(instance: DagsterInstance, run_id: str) -> list[str]:
    """What the run's steps said while they waited for a pool slot (Dagster's own event)."""
    return [
        record.message
        for record in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT)
        if record.step_key and "blocked by limit for pool" in record.message
    ]


@pytest.mark.timeout(600)
def test_overlapping_runs_of_two_projects_never_exceed_the_pool(pooled_repo: Path, postgres_url: str):
    jobs = ["pool_a_run", "pool_b_run", "pool_a_run"]
    processes = [launch(pooled_repo, job=job) for job in jobs]
    outputs = [finish(p) for p in processes]
    assert all(p.returncode == 0 for p in processes), "\n".join(o[-2000:] for o in outputs)

    spans = overlap_project.evaluation_spans(postgres_url)
    assert overlap_project.most_at_once(spans) <= LIMIT
    evaluated = collections.Counter((project, model, day) for project, model, day, _, _ in spans)
    assert max(evaluated.values()) == 1, "an interval was evaluated twice"
    expected = {(project, model, day) for project in PROJECTS for model, day in overlap_project.expected_intervals()}
    assert set(evaluated) == expected, "an interval was lost"

    with DagsterInstance.get() as instance:
        runs = instance.get_runs(RunsFilter())
        assert sorted(run.job_name for run in runs) == sorted(jobs)
        assert all(run.status == DagsterRunStatus.SUCCESS for run in runs)
        waits = [message for run in runs for message in pool_waits(instance, run.run_id)]
        assert waits and all(POOL in message for message in waits), "no step said which pool it waited for"
        limits = {pool.name: pool.limit for pool in instance.event_log_storage.get_pool_limits()}
        assert limits.get(POOL) == LIMIT
        assert ClaimStore.from_environment(instance=instance).list_claims() == []
