"""The run `dagster asset materialize -f definitions.py --select ...` starts, in the test's own
process: the implicit asset job of the file's ``defs``, subset to the selection, under the
location's own executor (claim-aware), through ``dg.execute_job`` as that CLI calls it. For
tests whose point is the run (its executor, claims, what it records and the UI shows), not a
CLI process, which would only add its start and a second load of the definitions."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path

import dagster as dg


def materialize_in_process(
    repo: Path, keys: Sequence[str] = (), *, group: str | None = None, instance: dg.DagsterInstance | None = None
) -> tuple[str, str]:
    """Materialize ``keys`` (user strings) and/or every asset of ``group`` on ``instance``
    (default: ``DAGSTER_HOME``'s); the run must succeed. Returns the run's id and its log
    messages (what the CLI prints)."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    recon_repo = ReconstructableRepository.for_file(str(repo / "definitions.py"), "defs", working_directory=str(repo))
    selection = [dg.AssetKey.from_user_string(k) for k in keys]
    if group is not None:
        graph = recon_repo.get_definition().asset_graph
        selection += [k for k in graph.get_all_asset_keys() if graph.get(k).group_name == group]
    assert selection, "nothing selected"
    with nullcontext(instance) if instance else dg.DagsterInstance.get() as run_instance:
        result = dg.execute_job(
            recon_repo.get_reconstructable_job("__ASSET_JOB"),
            run_instance,
            asset_selection=selection,
            raise_on_error=False,
        )
        output = "\n".join(entry.message for entry in run_instance.all_logs(result.run_id))
    assert result.success, output[-6000:]
    return result.run_id, output


def execute_job_in_process(
    definitions: Path, job: str, instance: dg.DagsterInstance, *, run_config: dict | None = None
) -> tuple[bool, str]:
    """The run `dagster job execute -f definitions.py -j job` starts, in the test's own process:
    the definitions loaded afresh from the file, the job under its own executor (claim-aware),
    through ``dg.execute_job`` as that CLI calls it. Returns whether the run succeeded and its
    log messages (what the CLI prints), the run's failure included. Started where the caller
    is (the CLI's working directory is where it is started)."""
    from dagster._core.definitions.reconstruct import ReconstructableRepository

    recon_repo = ReconstructableRepository.for_file(str(definitions), "defs", working_directory=os.getcwd())
    result = dg.execute_job(
        recon_repo.get_reconstructable_job(job), instance, run_config=run_config, raise_on_error=False
    )
    return result.success, "\n".join(entry.message for entry in instance.all_logs(result.run_id))


@contextmanager
def started_like_the_cli(cwd: Path, env: Mapping[str, str]) -> Iterator[None]:
    """This process in ``cwd`` with exactly ``env``, as a CLI command started there with that
    environment; both put back afterwards."""
    previous_env, previous_cwd = dict(os.environ), os.getcwd()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(previous_cwd)
        os.environ.clear()
        os.environ.update(previous_env)
