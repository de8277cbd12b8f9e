"""Issue 4, points 1 and 2: what a run worker and a code location load ask of SQLMesh.

A run's model steps share one SQLMesh Context and one computation of due intervals; each
step only evaluates its own batches. A load translates models without querying state.
Both are shown by counting SQLMesh's own calls around a real `<project>_run` job (the
claim-aware executor runs its steps as threads of this process) and a real
`load_definitions`, on generated projects of two sizes: whatever is per-model grows with
the project, everything else must not.
"""

from __future__ import annotations

import collections
from pathlib import Path

import dagster as dg
import pytest
from projects import sqlmesh_jobs

from benchmarks.contenders import DuckDBState, verify_duckdb_warehouse
from benchmarks.generate import JOB_NAME, generate_repository
from dagctl_dagster.execution.claims import ClaimOwnership

# The call that evaluates one model's batch: one per model here (FULL models, one batch);
# and the confirmation, in the claim store, that the run still holds a model before its step
# starts (the executor's; the step's first batch relies on it).
PER_MODEL_CALLS = {"Scheduler.evaluate", "ClaimOwnership.holds"}
# Polled on a clock while models run (has the environment been re-planned?), not per model.
CLOCKED_CALLS = {"EngineAdapterStateSync.get_environments_summary"}


def count_calls(monkeypatch, targets) -> collections.Counter:
    counts: collections.Counter = collections.Counter()
    for cls, name in targets:
        original = getattr(cls, name)

        def counted(*args, _original=original, _label=f"{cls.__name__}.{name}", **kwargs):
            counts[_label] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(cls, name, counted)
    return counts


def sqlmesh_targets():
    from sqlmesh.core.context import GenericContext
    from sqlmesh.core.engine_adapter.base import EngineAdapter
    from sqlmesh.core.scheduler import Scheduler
    from sqlmesh.core.state_sync.db.facade import EngineAdapterStateSync

    return [
        (GenericContext, "__init__"),
        (GenericContext, "load"),
        (EngineAdapter, "__init__"),
        (Scheduler, "merged_missing_intervals"),
        (Scheduler, "batch_intervals"),
        (Scheduler, "evaluate"),
        (EngineAdapterStateSync, "get_environment"),
        (EngineAdapterStateSync, "get_snapshots"),
        (EngineAdapterStateSync, "refresh_snapshot_intervals"),
        (EngineAdapterStateSync, "get_environments_summary"),
    ]


def counted_run(tmp_path: Path, monkeypatch, models: int, get_job) -> collections.Counter:
    """Plan prod (nothing computed), then run `bench_run` in this process, counting SQLMesh calls."""
    repo = generate_repository(tmp_path / f"bench_{models}", models=models, width=3)
    DuckDBState(repo).prepare()
    monkeypatch.setenv("DAGCTL_TEST_CONFIG", str(repo.config_path))
    monkeypatch.setenv("DAGCTL_TEST_JOB", JOB_NAME)
    monkeypatch.setenv("MAX_CONCURRENT_MODELS", "5")
    get_job()  # a code server's load first: the run worker's load then hits the cache
    with monkeypatch.context() as patch:
        counts = count_calls(patch, [*sqlmesh_targets(), (ClaimOwnership, "holds")])
        with dg.DagsterInstance.get() as instance:
            result = dg.execute_job(dg.reconstructable(get_job), instance, raise_on_error=False)
            materialized = {event.asset_key for event in result.all_events if event.is_step_materialization}
    assert result.success
    assert len(materialized) == models
    verify_duckdb_warehouse(repo, label=f"bench_run N={models}")  # every table holds its rows
    return counts


@pytest.mark.timeout(300)
def test_a_runs_models_share_one_context_and_one_due_interval_computation(
    tmp_path: Path, dagster_home: Path, monkeypatch
):
    small, large = 6, 18
    counts = {
        small: counted_run(tmp_path, monkeypatch, small, sqlmesh_jobs.get_job),
        large: counted_run(tmp_path, monkeypatch, large, sqlmesh_jobs.get_second_job),
    }

    for models, counted in counts.items():
        assert counted["Scheduler.evaluate"] == models  # each model step evaluates its own batch
        assert counted["ClaimOwnership.holds"] == models  # claims confirmed once per model step
        assert counted["GenericContext.__init__"] == 1  # one Context for the whole run
        assert counted["GenericContext.load"] == 0  # planned environment: no model file is parsed
        assert counted["Scheduler.merged_missing_intervals"] == 1  # due intervals computed once
        assert counted["Scheduler.batch_intervals"] == 1
        assert counted["EngineAdapterStateSync.refresh_snapshot_intervals"] == 1
        assert counted["EngineAdapterStateSync.get_snapshots"] == 1

    # Nothing but the per-model evaluation grows with the project: no per-model context,
    # state read or connection (engine adapter) setup.
    def fixed_costs(counted: collections.Counter) -> dict[str, int]:
        return {k: v for k, v in counted.items() if k not in PER_MODEL_CALLS | CLOCKED_CALLS}

    assert fixed_costs(counts[small]) == fixed_costs(counts[large])


@pytest.mark.timeout(300)
def test_loading_definitions_translates_models_without_a_single_sql_query(
    tmp_path: Path, dagster_home: Path, monkeypatch
):
    from sqlmesh.core.engine_adapter.base import EngineAdapter

    from dagctl_dagster import load_definitions

    repo = generate_repository(tmp_path / "bench", models=18, width=3)
    DuckDBState(repo).prepare()  # state exists, as on a deployed project
    monkeypatch.setenv("DAGCTL_ASSET_CACHE", "off")  # the full translation through a Context
    counts = count_calls(monkeypatch, [*sqlmesh_targets(), (EngineAdapter, "_execute")])

    defs = load_definitions(repo.config_path)

    job = defs.resolve_job_def(JOB_NAME)
    assert len(job.asset_layer.executable_asset_keys) == 18
    assert counts["GenericContext.__init__"] == 1
    assert counts["GenericContext.load"] == 1
    assert counts["EngineAdapter._execute"] == 0  # no state query, no warehouse query
    assert counts["EngineAdapterStateSync.get_environment"] == 0
    assert counts["EngineAdapterStateSync.get_snapshots"] == 0
