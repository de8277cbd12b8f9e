"""Every failed run reaches Slack exactly once, whatever failed; a green run reaches it never.

Real runs through the `dagster` CLI (`dagster job execute`, `dagster asset materialize`) on a
small SQLMesh repository and on the bundled dbt example, Slack being the Web API stub on
127.0.0.1. The step failure hook posts from the run worker; the run-failure sensor is then
evaluated tick by tick on the same instance, with the code location's own definitions, as
the daemon would. Each test counts every message Slack received for the run.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import dagster as dg
import pytest
from alerts_helpers import SECRET_TOKEN, evaluate
from conftest import venv_command
from projects.deployment import plan_without_backfill
from projects.sqlmesh_repo import JOB, PROJECT, dagster_env, run_job, start_job, write_repository
from slack_stub import SlackStub
from waiting import wait_for

from dagctl_dagster.alerts.heard import alerted_by
from dagctl_dagster.alerts.messages import MORE_FAILURES_NOTE
from dagctl_dagster.run_identity import RUN_FAILURE_SENSOR

pytestmark = pytest.mark.timeout(600)

CHANNEL = "#data-alerts"


def python_model(name: str, body: str) -> str:
    return f"""
    import os
    import time
    import typing as t

    import pandas as pd
    from sqlmesh import ExecutionContext, model


    @model("demo.{name}", kind="FULL", columns={{"id": "int"}})
    def execute(context: ExecutionContext, **kwargs: t.Any) -> pd.DataFrame:
        {body}
        return pd.DataFrame({{"id": [1]}})
    """


SOURCE = "MODEL (name demo.source, kind FULL);\nSELECT 1 AS id\n"
BOOM_A = python_model("boom_a", 'raise RuntimeError("boom_a broke on purpose")')
BOOM_B = python_model("boom_b", 'raise RuntimeError("boom_b broke on purpose")')
# Waits until the file $GATE_FILE names exists: a model that is mid-run for as long as a test needs.
GATE = python_model(
    "gate",
    'open(os.environ["GATE_FILE"] + ".waiting", "w").close()\n'
    '        while not os.path.exists(os.environ["GATE_FILE"]):\n'
    "            time.sleep(0.1)",
)
# Downstream of `source`, as in a real project: the first plan fails on it.
FIRST_PLAN_FAILS = (
    "MODEL (name demo.boom, kind FULL);\nSELECT error('boom: the feed has no header row') AS id FROM demo.source\n"
)


class Deployment:
    """A repository, its instance, the Slack stub, and the run-failure sensor ticking on them."""

    def __init__(self, root: Path, home: Path, stub: SlackStub):
        from dagctl_dagster import load_definitions

        self.root, self.home, self.stub = root, home, stub
        self.env = {"SLACK_API_URL": stub.url, "SLACK_BOT_TOKEN": SECRET_TOKEN}  # the run workers' too
        home.mkdir(parents=True, exist_ok=True)
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        self.instance = dg.DagsterInstance.from_config(str(home))
        self.defs = load_definitions(root / ".dagctl" / "config.yaml")
        self.sensor = self.defs.get_sensor_def(RUN_FAILURE_SENSOR)
        self.cursor = evaluate(self.sensor, self.instance, self.defs, None)  # the first tick sets the cursor

    def tick(self) -> None:
        from dagctl_dagster.alerts.slack import wait_for_pending_messages

        self.cursor = evaluate(self.sensor, self.instance, self.defs, self.cursor)
        assert wait_for_pending_messages(30)

    def messages_of(self, run_id: str) -> list[dict]:
        return [m for m in self.stub.messages if run_id in m["text"]]

    def dagster(self, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
        """``dagster <args>`` on this repository's instance, with the run workers' environment."""
        return subprocess.run(
            [venv_command("dagster"), *args],
            cwd=cwd,
            env=dagster_env(self.home, **self.env),
            capture_output=True,
            text=True,
            timeout=300,
        )

    def latest_run(self) -> dg.DagsterRun:
        return self.instance.get_runs(limit=1)[0]

    def close(self) -> None:
        self.instance.dispose()


def sqlmesh_repo(tmp_path: Path, models: dict[str, str]) -> Path:
    root = write_repository(tmp_path / "repo", models)
    config = root / ".dagctl" / "config.yaml"
    config.write_text(config.read_text() + f"alerts:\n  failure_channel: '{CHANNEL}'\n")
    return root


def run_once(deployment: Deployment, cwd: Path, **env: str) -> dg.DagsterRun:
    ran = run_job(deployment.root, deployment.home, cwd, **deployment.env, **env)
    run = deployment.latest_run()
    assert run.job_name == JOB, ran.output[-4000:]
    return run


@pytest.fixture
def stub(monkeypatch):
    with SlackStub() as slack:
        monkeypatch.setenv("SLACK_API_URL", slack.url)  # the sensor's, in this process
        monkeypatch.setenv("SLACK_BOT_TOKEN", SECRET_TOKEN)
        yield slack
    for request in slack.post_attempts:
        assert SECRET_TOKEN not in str(request.params)


def test_two_failed_models_post_once_and_the_green_rerun_posts_nothing(tmp_path: Path, stub: SlackStub):
    root = sqlmesh_repo(tmp_path, {"source.sql": SOURCE, "boom_a.py": BOOM_A, "boom_b.py": BOOM_B})
    # Both models break only while $BREAK is set.
    for name in ("boom_a.py", "boom_b.py"):
        model = root / "project" / "models" / name
        model.write_text(
            model.read_text().replace("raise RuntimeError", 'if os.environ.get("BREAK"): raise RuntimeError')
        )
    plan_without_backfill(root / "project")
    deployment = Deployment(root, tmp_path / "home", stub)
    try:
        failed = run_once(deployment, tmp_path / "cwd", BREAK="1")
        assert failed.status == dg.DagsterRunStatus.FAILURE
        deployment.tick()
        deployment.tick()
        [message] = deployment.messages_of(failed.run_id)
        assert stub.messages == [message]
        assert message["channel"] == CHANNEL
        assert "broke on purpose" in message["text"] and MORE_FAILURES_NOTE in message["text"]
        assert alerted_by(deployment.instance.get_run_by_id(failed.run_id)).startswith("step ")

        green = run_once(deployment, tmp_path / "cwd")  # the failed models are still due: they run now
        assert green.status == dg.DagsterRunStatus.SUCCESS
        deployment.tick()
        assert stub.messages == [message]
    finally:
        deployment.close()


def test_a_run_whose_step_did_not_run_is_posted_once_by_the_sensor(tmp_path: Path, stub: SlackStub):
    root = sqlmesh_repo(tmp_path, {"source.sql": SOURCE})
    plan_without_backfill(root / "project")
    # Added after the plan: not in environment 'prod' until the next plan.
    (root / "project" / "models" / "late.sql").write_text("MODEL (name demo.late, kind FULL);\nSELECT 1 AS x\n")
    deployment = Deployment(root, tmp_path / "home", stub)
    try:
        run = run_once(deployment, tmp_path / "cwd")
        assert run.status == dg.DagsterRunStatus.FAILURE
        assert stub.messages == []  # the step that did not run leaves the run to the sensor
        deployment.tick()
        deployment.tick()
        [message] = deployment.messages_of(run.run_id)
        assert stub.messages == [message]
        assert "`demo/late`" in message["text"] and "not in environment 'prod'" in message["text"]
        assert alerted_by(deployment.instance.get_run_by_id(run.run_id)) == RUN_FAILURE_SENSOR
    finally:
        deployment.close()


def test_a_failed_first_plan_is_posted_once(tmp_path: Path, stub: SlackStub):
    downstream = "MODEL (name demo.after, kind FULL);\nSELECT id FROM demo.source\n"
    root = sqlmesh_repo(tmp_path, {"source.sql": SOURCE, "after.sql": downstream, "boom.sql": FIRST_PLAN_FAILS})
    deployment = Deployment(root, tmp_path / "home", stub)
    try:
        run = run_once(deployment, tmp_path / "cwd")  # the environment was never planned
        assert run.status == dg.DagsterRunStatus.FAILURE
        deployment.tick()
        deployment.tick()
        [message] = deployment.messages_of(run.run_id)
        assert stub.messages == [message]
        assert "boom" in message["text"]
    finally:
        deployment.close()


def test_a_failed_plan_job_is_posted_once(tmp_path: Path, stub: SlackStub):
    root = sqlmesh_repo(tmp_path, {"source.sql": SOURCE, "boom.sql": FIRST_PLAN_FAILS})
    deployment = Deployment(root, tmp_path / "home", stub)
    run_config = tmp_path / "plan.yaml"
    run_config.write_text("ops: {proj_plan_op: {config: {auto_apply: true}}}\n")
    try:
        plan = deployment.dagster(
            [
                "job",
                "execute",
                "-f",
                str(root / "definitions.py"),
                "-j",
                f"{PROJECT}_plan",
                "--config",
                str(run_config),
            ],
            tmp_path,
        )
        run = deployment.latest_run()
        assert run.job_name == f"{PROJECT}_plan" and run.status == dg.DagsterRunStatus.FAILURE, plan.stderr[-4000:]
        deployment.tick()
        deployment.tick()
        [message] = deployment.messages_of(run.run_id)
        assert stub.messages == [message]
        assert "`proj_plan_op`" in message["text"] and message["channel"] == CHANNEL
    finally:
        deployment.close()


def test_a_dead_run_worker_is_posted_once(tmp_path: Path, stub: SlackStub):
    gates = tmp_path / "gates"
    gates.mkdir()
    gate_file = gates / "gate.open"
    root = sqlmesh_repo(tmp_path, {"source.sql": SOURCE, "gate.py": GATE})
    plan_without_backfill(root / "project")
    deployment = Deployment(root, tmp_path / "home", stub)
    try:
        worker = start_job(root, deployment.home, tmp_path / "cwd", GATE_FILE=str(gate_file), **deployment.env)
        wait_for(Path(f"{gate_file}.waiting").exists, "the run to reach the gate model", timeout=240, every=0.2)
        os.killpg(worker.pid, signal.SIGKILL)  # OOM, eviction: the worker is gone without a word
        worker.wait()
        run = deployment.latest_run()
        assert run.status == dg.DagsterRunStatus.STARTED
        # What run monitoring does when it finds the worker gone (dagster's monitor_started_run).
        deployment.instance.report_run_failed(run, "Run worker process exited (SIGKILL): its pod was OOMKilled")
        deployment.tick()
        deployment.tick()
        [message] = deployment.messages_of(run.run_id)
        assert stub.messages == [message]
        assert "failed outside any model step" in message["text"] and "OOMKilled" in message["text"]
    finally:
        deployment.close()


def test_a_materialize_all_run_without_hooks_is_posted_once(tmp_path: Path, stub: SlackStub):
    root = sqlmesh_repo(tmp_path, {"source.sql": SOURCE, "boom_a.py": BOOM_A, "boom_b.py": BOOM_B})
    plan_without_backfill(root / "project")
    deployment = Deployment(root, tmp_path / "home", stub)
    try:
        deployment.dagster(
            [
                "asset",
                "materialize",
                "-f",
                str(root / "definitions.py"),
                "--select",
                "demo/source,demo/boom_a,demo/boom_b",
            ],
            tmp_path,
        )
        run = deployment.latest_run()
        assert run.status == dg.DagsterRunStatus.FAILURE
        deployment.tick()
        deployment.tick()
        [message] = deployment.messages_of(run.run_id)
        assert stub.messages == [message]
        assert "2 step(s) failed" in message["text"] and message["channel"] == CHANNEL
        assert "`demo/boom_a`" in message["text"] and "`demo/boom_b`" in message["text"]
    finally:
        deployment.close()
