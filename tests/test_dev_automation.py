"""`scripts/dev.sh` as the README runs it: real `dg dev` (webserver + daemon) on the example.

The example's schedules are set to every minute, so the scheduler's first tick comes within
the test: with the default (``DAGCTL_AUTOMATION`` unset, dev.sh turns it off) every schedule
and the deploy sensor are stopped when the daemons are up and nothing is launched;
``DAGCTL_AUTOMATION=on`` launches the run as production would.

The README's CLI launch runs exactly as written next to that default deployment: the run is
one the UI re-executes without a warning (issue 27). The UI warns unless the run's code
location and job snapshot are the ones it serves now.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
from pathlib import Path

import pytest
from conftest import REPO_ROOT, free_port, instance_home
from daemon import schedule_due_at_start
from webserver import graphql, graphql_when

REPOSITORY = '{repositoryName: "__repository__", repositoryLocationName: "dagctl"}'
STATE = f"""
{{
  schedulesOrError(repositorySelector: {REPOSITORY}) {{ ... on Schedules {{ results {{ name scheduleState {{ status }} }} }} }}
  sensorsOrError(repositorySelector: {REPOSITORY}) {{ ... on Sensors {{ results {{ name sensorState {{ status }} }} }} }}
  runsOrError {{ ... on Runs {{ results {{ runId jobName }} }} }}
  instance {{ daemonHealth {{ allDaemonStatuses {{ daemonType healthy }} }} }}
}}
"""
ALERT_SENSORS = {"dagctl_tiered_alerts", "dagctl_slack_on_run_failure"}
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


def start_dev(repo: Path, tmp_path: Path, automation: str | None) -> tuple[subprocess.Popen, int]:
    config = repo / ".dagctl" / "config.yaml"
    config.write_text(re.sub(r'schedule: "[^"]*"', 'schedule: "* * * * *"', config.read_text()))
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)  # a test may create the instance dev.sh would, beforehand
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DAGCTL_AUTOMATION"}
    env.update(
        DAGSTER_HOME=str(home),
        DAGSTER_PORT=str(port),
        DAGCTL_CONFIG=str(config),
        SQLMESH_EXAMPLE_DB=str(tmp_path / "sqlmesh_warehouse.duckdb"),
        DBT_EXAMPLE_DB=str(tmp_path / "dbt_warehouse.duckdb"),
    )
    if automation is not None:
        env["DAGCTL_AUTOMATION"] = automation
    process = subprocess.Popen(
        [str(REPO_ROOT / "scripts" / "dev.sh")],
        env=env,
        stdout=open(tmp_path / "dev.out", "w"),
        stderr=open(tmp_path / "dev.err", "w"),
        start_new_session=True,
    )
    return process, port


def stop_dev(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def state_when(port: int, ready, timeout: float) -> dict:
    return graphql_when(
        port,
        STATE,
        lambda state: state["schedulesOrError"].get("results") and ready(state),
        "the automation state",
        timeout=timeout,
        every=2.0,
    )


def daemons_healthy(state: dict) -> bool:
    statuses = state["instance"]["daemonHealth"]["allDaemonStatuses"]
    healthy = {s["daemonType"] for s in statuses if s["healthy"]}
    return {"SCHEDULER", "SENSOR"} <= healthy


def readme_launch_command() -> list[str]:
    """The README's one CLI launch line, its `$PWD` the repository root."""
    readme = (REPO_ROOT / "README.md").read_text()
    (line,) = [ln for ln in readme.splitlines() if re.match(r"^DAGSTER_HOME=\$PWD/\S+ \.venv/bin/", ln)]
    return shlex.split(line.replace("$PWD", str(REPO_ROOT)))


@pytest.mark.timeout(900)
def test_dev_starts_with_automation_off_launches_nothing_and_re_executes_the_readme_cli_run(
    example_repo: Path, tmp_path: Path
):
    """One default `scripts/dev.sh` (no instance beforehand: dev.sh writes it) shows both:

    - automation off: once both daemons are healthy, every schedule and the deploy sensor are
      stopped and the alert sensors run; no schedule or sensor launches anything, start to end;
    - the README's CLI launch, from a second terminal while the daemons start: the run succeeds
      and is the UI's own (its code location and job snapshot are the ones served now), and it
      is the only run there is.

    Neither dg dev nor the CLI prints a warning or a traceback.
    """
    process, port = start_dev(example_repo, tmp_path, automation=None)
    launch = None
    try:
        # The webserver answers once the instance dev.sh made has its storage: from then on a
        # second process can write runs into it (two creating a fresh SQLite storage at once can
        # stamp its schema twice).
        graphql_when(port, RUNS, lambda data: "runsOrError" in data, "dg dev's webserver", every=0.5)
        # The README's line, as typed in a second terminal at the repository root; DAGSTER_HOME
        # is the instance dev.sh uses in this test, and the config and warehouses are dev.sh's
        # too: both terminals share one environment, as a user's do. (A DBT_EXAMPLE_DB of its
        # own would also change the dbt manifest's fingerprint: the launch's code server and
        # then the run worker would each parse the dbt project again.)
        assignment, *command = readme_launch_command()
        assert assignment.startswith("DAGSTER_HOME=")
        env = dict(os.environ)
        env.update(
            DAGSTER_HOME=str(tmp_path / "dagster_home"),
            DAGCTL_CONFIG=str(example_repo / ".dagctl" / "config.yaml"),
            SQLMESH_EXAMPLE_DB=str(tmp_path / "sqlmesh_warehouse.duckdb"),
            DBT_EXAMPLE_DB=str(tmp_path / "dbt_warehouse.duckdb"),
        )
        launch = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdout=open(tmp_path / "launch.out", "w"),
            stderr=open(tmp_path / "launch.err", "w"),
        )

        # Both daemons have iterated over the location: every schedule and sensor was seen in
        # the state asserted below (what `automation on` launches from is the next test's).
        state = state_when(port, daemons_healthy, timeout=300)
        schedules = {s["name"]: s["scheduleState"]["status"] for s in state["schedulesOrError"]["results"]}
        sensors = {s["name"]: s["sensorState"]["status"] for s in state["sensorsOrError"]["results"]}
        assert "sqlmesh_example_run_schedule" in schedules and "dbt_example_run_schedule" in schedules
        assert set(schedules.values()) == {"STOPPED"}, schedules
        assert sensors["dagctl_config_version_sensor"] == "STOPPED"
        assert {name: sensors[name] for name in ALERT_SENSORS} == {name: "RUNNING" for name in ALERT_SENSORS}
        # Nothing but the README's launch (not yet or just submitted) is there.
        assert {r["jobName"] for r in state["runsOrError"]["results"]} <= {"sqlmesh_example_run"}, state

        assert launch.wait(timeout=300) == 0, (tmp_path / "launch.out").read_text()[-2000:] + (
            tmp_path / "launch.err"
        ).read_text()[-2000:]
        launch_err = (tmp_path / "launch.err").read_text()
        assert "Warning" not in launch_err, launch_err[-2000:]
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
        # Automation stayed off from start to end: the README's run is the only one.
        assert [r["runId"] for r in graphql(port, RUNS)["runsOrError"]["results"]] == [run_id]
    finally:
        if launch is not None and launch.poll() is None:
            launch.kill()
            launch.wait(timeout=30)
        stop_dev(process)

    output = (tmp_path / "dev.out").read_text() + (tmp_path / "dev.err").read_text()
    assert "Warning" not in output, output[-3000:]
    assert "Traceback" not in output, output[-3000:]


@pytest.mark.timeout(600)
def test_automation_on_launches_the_scheduled_run(example_repo: Path, tmp_path: Path):
    # The instance dev.sh keeps, with the schedule started two minutes back: the scheduler's
    # first iteration launches its latest missed tick instead of waiting for the next minute.
    home = instance_home(tmp_path / "dagster_home")
    schedule_due_at_start(str(home), REPO_ROOT, "dagctl", "sqlmesh_example_run_schedule", "* * * * *")
    process, port = start_dev(example_repo, tmp_path, automation="on")
    try:
        state = state_when(port, lambda s: s["runsOrError"]["results"], timeout=400)
    finally:
        stop_dev(process)
    assert {r["jobName"] for r in state["runsOrError"]["results"]} & {"sqlmesh_example_run", "dbt_example_run"}
