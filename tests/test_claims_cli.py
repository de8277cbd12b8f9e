"""`dagctl-dagster claims list|release`, run as the installed console script."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from conftest import instance_home, venv_command
from waiting import wait_for

from dagctl_dagster.execution.claims import ClaimStore


def dagctl_claims(*args: str, dagster_home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DAGCTL_CLAIMS_URL", "DAGSTER_HOME")}
    if dagster_home is not None:
        env["DAGSTER_HOME"] = str(dagster_home)
    return subprocess.run(
        [venv_command("dagctl-dagster"), "claims", *args], env=env, capture_output=True, text=True, timeout=120
    )


def table_rows(stdout: str) -> list[list[str]]:
    """The table's rows under the MODEL header, split on runs of two or more spaces."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("MODEL"))
    assert lines[start].split() == ["MODEL", "RUN", "ID", "RUN", "STATUS", "SINCE", "EXPIRES"]
    return [[cell for cell in line.split("  ") if cell.strip()] for line in lines[start + 1 :]]


def formatted(store: ClaimStore, model: str) -> tuple[str, str]:
    claim = {c.model: c for c in store.list_claims()}[model]
    return claim.claimed_at.strftime("%Y-%m-%d %H:%M:%S UTC"), claim.expires_at.strftime("%Y-%m-%d %H:%M:%S UTC")


CLAIMS_SECRET = "cl@ims:pa/ss-Word77"


def with_query_password(url: str) -> str:
    """The URL with the password as a `?password=` query parameter (the server trusts any)."""
    parsed = sa.engine.make_url(url).set(password=None)
    plain = parsed.render_as_string(hide_password=False)
    return f"{plain}{'&' if '?' in plain else '?'}password={quote(CLAIMS_SECRET, safe='')}"


def leaked(text: str) -> list[str]:
    fragments = {CLAIMS_SECRET, quote(CLAIMS_SECRET, safe=""), "ims:pa", "pa/ss", "ss-Word77"}
    return sorted(f for f in fragments if f in text)


@pytest.mark.timeout(240)
def test_list_and_release_the_sqlite_store_refusing_live_runs_and_freeing_finished_ones(dagster_home: Path):
    """Lists the store with each holder's status in the instance; releasing refuses live claims
    without --force (a run the instance does not know, or one it says is STARTED) and frees a
    finished run's claims without it. (Was two tests on the same kind of store: one for runs the
    instance does not know, one for runs it does.)"""
    from dagster import DagsterInstance, DagsterRun, DagsterRunStatus

    with DagsterInstance.get() as instance:
        instance.add_run(DagsterRun(job_name="proj_run", run_id="run-live", status=DagsterRunStatus.STARTED))
        instance.add_run(DagsterRun(job_name="proj_run", run_id="run-done", status=DagsterRunStatus.SUCCESS))
    store = ClaimStore.from_environment(dagster_home=dagster_home, lease_seconds=600)
    store.claim("run-a", ["shop.orders", "shop.customers"])
    store.claim("run-b", ["shop.payments"])
    store.claim("run-live", ["shop.refunds"])
    store.claim("run-done", ["shop.shipments"])
    since, expires = formatted(store, "shop.orders")

    listed = dagctl_claims("list", dagster_home=dagster_home)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0] == f"5 claim(s) in sqlite:///{dagster_home.resolve() / 'dagctl_claims.sqlite'}"
    rows = table_rows(listed.stdout)
    assert [[cell.strip() for cell in row[:2]] for row in rows] == [
        ["shop.customers", "run-a"],
        ["shop.orders", "run-a"],
        ["shop.payments", "run-b"],
        ["shop.refunds", "run-live"],
        ["shop.shipments", "run-done"],
    ]
    assert [cell.strip() for cell in rows[1][2:]] == ["NOT_IN_INSTANCE", since, expires]
    statuses = {row[0].strip(): row[2].strip() for row in rows}
    assert statuses == {
        "shop.customers": "NOT_IN_INSTANCE",
        "shop.orders": "NOT_IN_INSTANCE",
        "shop.payments": "NOT_IN_INSTANCE",
        "shop.refunds": "STARTED",
        "shop.shipments": "SUCCESS",
    }

    refused = dagctl_claims("release", "--run-id", "run-a", dagster_home=dagster_home)
    assert refused.returncode == 1
    assert "holds 2 live claim(s)" in refused.stderr and "--force" in refused.stderr
    assert len(store.list_claims()) == 5
    refused_live = dagctl_claims("release", "--run-id", "run-live", dagster_home=dagster_home)
    assert refused_live.returncode == 1
    assert "its status is STARTED" in refused_live.stderr and "evaluated twice" in refused_live.stderr
    released = dagctl_claims("release", "--run-id", "run-a", "--force", dagster_home=dagster_home)
    assert (released.returncode, released.stdout) == (0, "released 2 claim(s) of run run-a\n")
    again = dagctl_claims("release", "--run-id", "run-a", dagster_home=dagster_home)
    assert again.stdout == "released 0 claim(s) of run run-a\n"
    freed = dagctl_claims("release", "--run-id", "run-done", dagster_home=dagster_home)
    assert (freed.returncode, freed.stdout) == (0, "released 1 claim(s) of run run-done\n")
    assert [(c.model, c.run_id) for c in store.list_claims()] == [
        ("shop.payments", "run-b"),
        ("shop.refunds", "run-live"),
    ]
    store.dispose()


@pytest.mark.timeout(240)
def test_list_and_release_postgresql_by_url_masking_its_password_and_through_the_dagster_instance(
    postgres_url: str, tmp_path: Path
):
    """The URL given carries its password as a `?password=` query parameter: the listing names
    the store with it masked (this was a test of its own, listing the same kind of store)."""
    url = with_query_password(postgres_url)
    store = ClaimStore(url, lease_seconds=600)
    store.claim("run-a", ["shop.orders"])
    short_lease = ClaimStore(url, lease_seconds=0.001)
    short_lease.claim("run-old", ["shop.items"])
    short_lease.dispose()
    since, expires = formatted(store, "shop.orders")
    _, old_expiry = formatted(store, "shop.items")

    listed = dagctl_claims("list", "--url", url)
    assert listed.returncode == 0, listed.stderr
    first_line = listed.stdout.splitlines()[0]
    assert first_line == f"2 claim(s) in {store.masked_url}"
    assert first_line.startswith("2 claim(s) in postgresql") and "password=***" in first_line
    assert leaked(listed.stdout + listed.stderr) == []
    assert [[cell.strip() for cell in row] for row in table_rows(listed.stdout)] == [
        ["shop.items", "run-old", "UNKNOWN", formatted(store, "shop.items")[0], f"{old_expiry} (expired)"],
        ["shop.orders", "run-a", "UNKNOWN", since, expires],
    ]

    # no --url: the instance's dagster-postgres storage in DAGSTER_HOME/dagster.yaml is used
    home = instance_home(tmp_path / "dagster_home", postgres_url)
    released = dagctl_claims("release", "--run-id", "run-a", "--force", dagster_home=home)
    assert (released.returncode, released.stdout) == (0, "released 1 claim(s) of run run-a\n"), released.stderr
    assert [(c.model, c.run_id) for c in store.list_claims()] == [("shop.items", "run-old")]
    store.dispose()


@pytest.mark.timeout(120)
def test_unreachable_store_is_named_with_its_password_masked(tmp_path: Path):
    failed = dagctl_claims("list", "--url", "postgresql://dagster:hunter2@127.0.0.1:1/dagster")
    assert failed.returncode == 1
    assert failed.stderr.startswith(
        "error: claim store postgresql://dagster:***@127.0.0.1:1/dagster failed: connection to server at"
    )
    assert "hunter2" not in failed.stdout + failed.stderr

    unconfigured = dagctl_claims("release", "--run-id", "run-a")
    assert unconfigured.returncode == 1
    assert "error: no claim store configured: set DAGCTL_CLAIMS_URL" in unconfigured.stderr


@pytest.mark.parametrize(
    ("url", "words"),
    [
        (
            f"postgresql://dagster@127.0.0.1:1/dagster?password={quote(CLAIMS_SECRET, safe='')}",
            "postgresql://dagster@127.0.0.1:1/dagster?password=*** failed: connection to server",
        ),
        (f"postgresql://dagster@127.0.0.1:1/dagster?password={CLAIMS_SECRET}", "is not percent-encoded"),
        (f"host=127.0.0.1 port=1 user=dagster password={CLAIMS_SECRET} dbname=dagster", "password=***"),
        (f"postgresql://dagster:{CLAIMS_SECRET}@127.0.0.1:1/dagster", "is not percent-encoded; write it as %40"),
    ],
    ids=["query-parameter", "unescaped-query-parameter", "libpq-keyword-dsn", "unescaped-password"],
)
@pytest.mark.timeout(120)
def test_errors_mask_the_password_in_every_url_form(url: str, words: str):
    failed = dagctl_claims("list", "--url", url)
    assert failed.returncode == 1
    [line] = failed.stderr.splitlines()
    assert line.startswith("error: ") and words in line
    assert "Traceback" not in failed.stderr
    assert leaked(failed.stdout + failed.stderr) == []


def test_heartbeat_warnings_mask_the_password(caplog):
    from dagctl_dagster.execution.claims import LeaseHeartbeat

    url = f"postgresql://dagster@127.0.0.1:1/dagster?password={quote(CLAIMS_SECRET, safe='')}"
    store = ClaimStore(url, lease_seconds=600)
    heartbeat = LeaseHeartbeat(store, "run-a", interval=0.01)
    with caplog.at_level("WARNING", logger="dagctl_dagster.execution.claims"):
        with heartbeat:
            wait_for(lambda: caplog.records, "a renewal warning", timeout=30, every=0.01)
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings and "could not renew the claims of run run-a" in warnings[0]
    assert "password=***" in warnings[0]
    assert leaked("\n".join(warnings)) == []
    store.dispose()
