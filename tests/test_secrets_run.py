"""Secret values never reach what a real run writes: event log, compute logs, stdout/stderr.

A tiny SQLMesh project (DuckDB) has one Python model whose error text quotes the values of
`SLACK_BOT_TOKEN` and `SQLMESH_STATE_PASSWORD`; claim-store URLs carry passwords in every
form. Each case is a real `dagster job execute`; afterwards every file under DAGSTER_HOME
(the SQLite event databases, the compute logs) and the process's output are scanned.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import instance_home, venv_command
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus
from projects.deployment import plan_without_backfill, write_deployment

SLACK_TOKEN = "xoxb-11111-22222-SeCrEtSlAcK"
STATE_PASSWORD = "st@te:pa/ss-Word42"
CLAIMS_PASSWORD = "cl@ims:pa/ss-Word77"

MODEL = """
import os

import pandas as pd
from sqlmesh import ExecutionContext, model


@model("secrets_demo.leaky", kind="FULL", columns={"x": "int"})
def execute(context: ExecutionContext, **kwargs) -> pd.DataFrame:
    if os.environ.get("LEAKY_MODEL_FAILS") == "1":
        raise RuntimeError(
            f"could not log in with token={os.environ['SLACK_BOT_TOKEN']} "
            f"password={os.environ['SQLMESH_STATE_PASSWORD']}"
        )
    return pd.DataFrame({"x": [1]})
"""

CONFIG = """
gateways:
  local:
    connection:
      type: duckdb
      database: {database}
      concurrent_tasks: 5
default_gateway: local
model_defaults:
  dialect: duckdb
"""


@pytest.fixture
def leaky_repo(tmp_path: Path, monkeypatch) -> Path:
    root = tmp_path / "repo"
    project = root / "leaky"
    (project / "models").mkdir(parents=True)
    (project / "models" / "leaky.py").write_text(MODEL)
    (project / "config.yaml").write_text(CONFIG.format(database=project / "warehouse.duckdb"))
    write_deployment(root, {"leaky": ("sqlmesh", "leaky")})
    home = instance_home(tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for name in ("DAGCTL_CLAIMS_URL", "MAX_CONCURRENT_MODELS", "LEAKY_MODEL_FAILS"):
        monkeypatch.delenv(name, raising=False)
    plan_without_backfill(project)
    return root


def execute(repo: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "SLACK_BOT_TOKEN": SLACK_TOKEN, "SQLMESH_STATE_PASSWORD": STATE_PASSWORD, **env}
    return subprocess.run(
        [venv_command("dagster"), "job", "execute", "-f", "definitions.py", "-j", "leaky_run"],
        cwd=repo,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


def forms(secret: str) -> set[str]:
    """The secret and the fragments a parser might split it into, raw and URL-encoded."""
    fragments = {secret, quote(secret, safe="")}
    fragments |= {part for part in secret.replace("@", ":").replace("/", ":").split(":") if len(part) >= 4}
    return fragments


def leaks(text: str, *secrets: str) -> list[str]:
    return sorted(form for secret in secrets for form in forms(secret) if form in text)


def files_leaking(home: Path, *secrets: str) -> dict[str, list[str]]:
    found = {}
    for path in home.rglob("*"):
        if path.is_file():
            content = path.read_bytes().decode("utf-8", errors="replace")
            if hits := leaks(content, *secrets):
                found[str(path.relative_to(home))] = hits
    return found


def only_run() -> tuple[DagsterInstance, str]:
    instance = DagsterInstance.get()
    [run] = instance.get_runs()
    return instance, run.run_id


@pytest.mark.timeout(600)
def test_a_failing_models_error_is_masked_in_events_compute_logs_and_output(leaky_repo: Path):
    result = execute(leaky_repo, LEAKY_MODEL_FAILS="1")
    output = result.stdout + result.stderr
    assert result.returncode != 0

    home = Path(os.environ["DAGSTER_HOME"])
    assert list((home / "storage").rglob("*.err")), "no compute log files were written"
    assert files_leaking(home, SLACK_TOKEN, STATE_PASSWORD) == {}
    assert leaks(output, SLACK_TOKEN, STATE_PASSWORD) == [], output[-3000:]
    with DagsterInstance.get() as instance:
        [run] = instance.get_runs()
        assert run.status == DagsterRunStatus.FAILURE
        every_record = "\n".join(str(record) for record in instance.all_logs(run.run_id))
        assert leaks(every_record, SLACK_TOKEN, STATE_PASSWORD) == []
        [failure] = instance.all_logs(run.run_id, of_type=DagsterEventType.STEP_FAILURE)
        # The model did fail with its own error text, masked (not some unrelated failure).
        failure_data = failure.dagster_event.event_specific_data
        assert "SQLMesh model secrets_demo.leaky (project 'leaky') failed" in failure_data.error.message
        traceback = failure_data.user_failure_data.metadata["traceback"].value
        assert "could not log in with token=*** password=***" in traceback


@pytest.mark.parametrize(
    "claims_url",
    [
        f"postgresql://dagster@127.0.0.1:1/dagster?sslmode=disable&password={quote(CLAIMS_PASSWORD, safe='')}",
        f"host=127.0.0.1 port=1 user=dagster password={CLAIMS_PASSWORD} dbname=dagster",
        f"postgresql://dagster:{CLAIMS_PASSWORD}@127.0.0.1:1/dagster",
    ],
    ids=["query-parameter", "libpq-keyword-dsn", "unescaped-characters"],
)
@pytest.mark.timeout(600)
def test_a_claim_store_url_is_masked_in_the_run_failure(leaky_repo: Path, claims_url: str):
    result = execute(leaky_repo, DAGCTL_CLAIMS_URL=claims_url)
    assert result.returncode != 0

    home = Path(os.environ["DAGSTER_HOME"])
    assert files_leaking(home, CLAIMS_PASSWORD) == {}
    output = result.stdout + result.stderr
    assert leaks(output, CLAIMS_PASSWORD) == [], output[-3000:]
    with DagsterInstance.get() as instance:
        [run] = instance.get_runs()
        assert run.status == DagsterRunStatus.FAILURE
        records = instance.all_logs(run.run_id)
        assert leaks("\n".join(str(record) for record in records), CLAIMS_PASSWORD) == []
        failures = [
            r for r in records if r.dagster_event and r.dagster_event.event_type == DagsterEventType.RUN_FAILURE
        ]
        failure_text = "\n".join(str(r) for r in records if r.dagster_event and r.dagster_event.is_failure)
        assert failures and "claim store" in failure_text and "***" in failure_text, failure_text[-2000:]
