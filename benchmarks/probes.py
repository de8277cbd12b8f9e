"""Small programs the harness starts in fresh processes (run by path, no imports from the harness).

    python benchmarks/probes.py plan <project_dir> <gateway>
    python benchmarks/probes.py context-load <project_dir> <gateway>
    python benchmarks/probes.py definitions-load <dagctl_config>
    python benchmarks/probes.py worker-start <definitions.py> <job>
    python benchmarks/probes.py code-server-phases <definitions.py> <attribute>

``plan`` creates the prod environment without computing any interval (tables exist, nothing
is backfilled), the state every run contender starts from. The two ``*-load`` probes print
the seconds the load itself took (after imports) as their last line.
"""

from __future__ import annotations

import sys
import time


def plan(project_dir: str, gateway: str) -> None:
    from sqlmesh import Context

    context = Context(paths=[project_dir], gateway=gateway)
    try:
        context.plan("prod", auto_apply=True, no_prompts=True, skip_backfill=True, skip_tests=True)
    finally:
        context.close()


def context_load(project_dir: str, gateway: str) -> None:
    from sqlmesh import Context

    started = time.perf_counter()
    context = Context(paths=[project_dir], gateway=gateway)
    models = len(context.models)
    context.close()
    print(f"models={models}")
    print(f"{time.perf_counter() - started:.4f}")


def definitions_load(config_path: str) -> None:
    import sqlmesh  # noqa: F401  imported before the clock starts, as in context_load

    from dagctl_dagster import load_definitions

    started = time.perf_counter()
    defs = load_definitions(config_path)
    # What a code server does next: resolve jobs and the asset graph.
    repository = defs.get_repository_def()
    job_assets = len(repository.get_job("bench_run").asset_layer.executable_asset_keys)
    print(f"job_assets={job_assets}")
    print(f"{time.perf_counter() - started:.4f}")


def worker_start(definitions_file: str, job_name: str) -> None:
    """What a run worker pays before its first step: imports, then the code location load.

    Prints ``imports=<s>``, ``load=<s>`` (load the file's ``defs``, resolve the job's
    plan as ``dagster job execute`` does) and the sum as the last line.
    """
    started = time.perf_counter()
    import os

    import dagster as dg  # noqa: F401
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster._core.execution.api import create_execution_plan

    import dagctl_dagster  # noqa: F401

    imported = time.perf_counter()
    repository = ReconstructableRepository.for_file(definitions_file, "defs", os.getcwd())
    job = repository.get_reconstructable_job(job_name)
    plan = create_execution_plan(job)
    loaded = time.perf_counter()
    print(f"steps={len(plan.step_keys_to_execute)}")
    print(f"imports={imported - started:.4f}")
    print(f"load={loaded - imported:.4f}")
    print(f"{loaded - started:.4f}")


def code_server_phases(definitions_file: str, attribute: str) -> None:
    """What a code server does for one location, phase by phase, in seconds: imports, the
    definitions load (the file's ``attribute``), the repository and its jobs, the repository
    snapshot it sends the webserver, its serialization and (the webserver's side) deserialization."""
    started = time.perf_counter()
    import importlib.util

    import dagster as dg  # noqa: F401
    from dagster._core.remote_representation.external_data import RepositorySnap
    from dagster._serdes import deserialize_value, serialize_value

    import dagctl_dagster  # noqa: F401

    phases: list[tuple[str, float]] = [("imports", time.perf_counter() - started)]

    def phase(name: str, since: float) -> float:
        now = time.perf_counter()
        phases.append((name, now - since))
        return now

    clock = time.perf_counter()
    spec = importlib.util.spec_from_file_location("definitions_under_probe", definitions_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    repository = getattr(module, attribute).get_repository_def()
    clock = phase("load", clock)
    repository.get_all_jobs()
    clock = phase("jobs", clock)
    snapshot = RepositorySnap.from_def(repository, defer_snapshots=True)
    clock = phase("snapshot", clock)
    text = serialize_value(snapshot)
    clock = phase("serialize", clock)
    deserialize_value(text, RepositorySnap)
    phase("deserialize", clock)
    print(f"snapshot_mb={len(text) / 1e6:.1f}")
    print(" ".join(f"{name}={seconds:.2f}" for name, seconds in phases))


PROBES = {
    "plan": plan,
    "context-load": context_load,
    "definitions-load": definitions_load,
    "worker-start": worker_start,
    "code-server-phases": code_server_phases,
}

if __name__ == "__main__":
    name, *arguments = sys.argv[1:]
    PROBES[name](*arguments)
