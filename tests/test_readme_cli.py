"""The README's CLI launch, run exactly as written next to `scripts/dev.sh`: the run is one
the UI re-executes without a warning (issue 27). The UI warns unless the run's code location
and job snapshot are the ones it serves now."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from conftest import REPO_ROOT, copy_repository, instance_home
from dagster import DagsterInstance
from test_dev_automation import start_dev, stop_dev
from webserver import graphql, graphql_when

pytestmark = pytest.mark.timeout(600)

RUN = """
query ($id: ID!) {
  runOrError(runId: $id) {
    ... on Run {
      status
      pipelineSnapshotId
      repositoryOrigin { repositoryLocationName repositoryName }
    }
  }
}
"""
SERVED_JOB = """
query ($job: String!) {
  pipelineOrError(params: {pipelineName: $job, repositoryName: "__repository__", repositoryLocationName: "dagctl"}) {
    ... on Pipeline { pipelineSnapshotId }
  }
}
"""
RUNS = "{ runsOrError { ... on Runs { results { runId jobName } } } }"


def readme_launch_command() -> list[str]:
    """The README's one CLI launch line, its `$PWD` the repository root."""
    readme = (REPO_ROOT / "README.md").read_text()
    (line,) = [ln for ln in readme.splitlines() if re.match(r"^DAGSTER_HOME=\$PWD/\S+ \.venv/bin/", ln)]
    return shlex.split(line.replace("$PWD", str(REPO_ROOT)))


def test_the_readme_cli_launch_is_re_executable_without_a_warning(tmp_path: Path):
    repo = copy_repository(tmp_path / "repo")
    # The instance dev.sh writes (it keeps one that exists), its storage created first: the
    # launch runs while `dg dev` starts, as from a second terminal, and two processes creating
    # a fresh SQLite storage at once can stamp its schema twice.
    home = instance_home(tmp_path / "dagster_home")
    DagsterInstance.from_config(str(home)).dispose()
    process, port = start_dev(repo, tmp_path, automation="off")
    try:
        assignment, *command = readme_launch_command()
        env = dict(os.environ)
        env.update(
            DAGSTER_HOME=str(home),  # what dev.sh uses in this test
            DAGCTL_CONFIG=str(repo / ".dagctl" / "config.yaml"),
            SQLMESH_EXAMPLE_DB=str(tmp_path / "sqlmesh_warehouse.duckdb"),
        )
        assert assignment.startswith("DAGSTER_HOME=")
        launched = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert launched.returncode == 0, launched.stdout[-2000:] + launched.stderr[-2000:]
        assert "Warning" not in launched.stderr, launched.stderr[-2000:]
        runs = graphql_when(port, RUNS, lambda data: data["runsOrError"]["results"], "dg dev to serve the launched run")
        (run_id,) = [r["runId"] for r in runs["runsOrError"]["results"] if r["jobName"] == "sqlmesh_example_run"]
        run = graphql_when(
            port,
            RUN,
            lambda data: data["runOrError"]["status"] in ("SUCCESS", "FAILURE", "CANCELED"),
            "the run to finish",
            variables={"id": run_id},
        )["runOrError"]
        assert run["status"] == "SUCCESS"
        served = graphql(port, SERVED_JOB, {"job": "sqlmesh_example_run"})["pipelineOrError"]
        assert run["repositoryOrigin"] == {"repositoryLocationName": "dagctl", "repositoryName": "__repository__"}
        assert run["pipelineSnapshotId"] == served["pipelineSnapshotId"]
    finally:
        stop_dev(process)
