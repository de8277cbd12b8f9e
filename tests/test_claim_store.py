"""The claim store against real PostgreSQL and a SQLite file: races, leases, release, lookup."""

from __future__ import annotations

import json
import logging
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import instance_home
from waiting import wait_for

from dagctl_dagster.execution.claims import (
    ClaimResult,
    ClaimStore,
    ClaimStoreError,
    LeaseHeartbeat,
)

MODELS = [f"shop.model_{i:02d}" for i in range(40)]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'claims.sqlite'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def make_store(store_url: str):
    stores: list[ClaimStore] = []

    def make(lease_seconds: float = 60.0) -> ClaimStore:
        stores.append(ClaimStore(store_url, lease_seconds=lease_seconds))
        return stores[-1]

    yield make
    for store in stores:
        store.dispose()


def contender_batches(count: int, seed: int) -> list[list[str]]:
    """Overlapping batches: each contender asks for 20 of the 40 models, in its own order."""
    rng = random.Random(seed)
    return [rng.sample(MODELS, 20) for _ in range(count)]


def assert_each_model_won_once(batches: dict[str, list[str]], results: dict[str, ClaimResult], store: ClaimStore):
    requested = {m for batch in batches.values() for m in batch}
    wins = Counter(m for result in results.values() for m in result.won)
    assert set(wins) == requested
    assert set(wins.values()) == {1}, {m: n for m, n in wins.items() if n > 1}
    winner = {m: run_id for run_id, result in results.items() for m in result.won}
    for run_id, result in results.items():
        assert not set(result.won) & set(result.held)
        assert set(result.won) | set(result.held) == set(batches[run_id])
        # a loser is told who holds the model, and it is the one contender that won it
        assert {m: c.run_id for m, c in result.held.items()} == {m: winner[m] for m in result.held}
    assert {c.model: c.run_id for c in store.list_claims()} == winner


@pytest.mark.timeout(120)
def test_threads_racing_for_overlapping_batches_each_model_is_won_once(make_store):
    contenders = 16
    checker = make_store()
    for round_number in range(3):
        batches = {f"run-{round_number}-{i:02d}": b for i, b in enumerate(contender_batches(contenders, round_number))}
        # each run worker has its own store (and connections), as in production
        stores = {run_id: make_store() for run_id in batches}
        barrier = threading.Barrier(contenders)
        results: dict[str, ClaimResult] = {}
        errors: list[BaseException] = []

        def contend(run_id: str) -> None:
            try:
                barrier.wait()
                results[run_id] = stores[run_id].claim(run_id, batches[run_id])
            except BaseException as exc:  # reported below, with the run that hit it
                errors.append(exc)

        threads = [threading.Thread(target=contend, args=(run_id,)) for run_id in batches]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert_each_model_won_once(batches, results, checker)
        assert sum(checker.release(run_id) for run_id in batches) == len({m for b in batches.values() for m in b})
        assert checker.list_claims() == []


PROCESS_CONTENDER = r"""
import json, sys, threading
from dagctl_dagster.execution.claims import ClaimStore

url, batches = sys.argv[1], json.loads(sys.argv[2])
stores = {run_id: ClaimStore(url) for run_id in batches}
barrier = threading.Barrier(len(batches))
results = {}

def contend(run_id):
    barrier.wait()
    result = stores[run_id].claim(run_id, batches[run_id])
    results[run_id] = {"won": result.won, "held": {m: c.run_id for m, c in result.held.items()}}

print("ready", flush=True)
sys.stdin.readline()  # "go": every process starts claiming at the same moment
threads = [threading.Thread(target=contend, args=(r,)) for r in batches]
[t.start() for t in threads]
[t.join() for t in threads]
print(json.dumps(results), flush=True)
"""


@pytest.mark.timeout(180)
def test_processes_racing_for_overlapping_batches_each_model_is_won_once(store_url, make_store):
    processes, threads_per_process = 4, 4
    all_batches = contender_batches(processes * threads_per_process, seed=7)
    per_process = [
        {f"proc{p}-thread{t}": all_batches[p * threads_per_process + t] for t in range(threads_per_process)}
        for p in range(processes)
    ]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", PROCESS_CONTENDER, store_url, json.dumps(batches)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for batches in per_process
    ]
    try:
        for child in children:
            assert child.stdout.readline().strip() == "ready"
        for child in children:
            child.stdin.write("go\n")
            child.stdin.flush()
        outputs = [child.communicate(timeout=120)[0] for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert [child.returncode for child in children] == [0] * processes

    raw = {run_id: r for out in outputs for run_id, r in json.loads(out.strip().splitlines()[-1]).items()}
    assert len(raw) == processes * threads_per_process
    batches = {run_id: b for batches in per_process for run_id, b in batches.items()}
    store = make_store()
    holders = {c.model: c for c in store.list_claims()}
    results = {run_id: ClaimResult(won=r["won"], held={m: holders[m] for m in r["held"]}) for run_id, r in raw.items()}
    # the holder each loser saw is the model's winner (the claims are never released here)
    assert all(holders[m].run_id == holder for r in raw.values() for m, holder in r["held"].items())
    assert_each_model_won_once(batches, results, store)


@pytest.mark.timeout(60)
def test_expired_lease_is_won_by_another_run(make_store):
    store = make_store(lease_seconds=1.0)
    assert store.claim("run-a", ["shop.orders"]).won == ["shop.orders"]

    first_try = store.claim("run-b", ["shop.orders"])
    assert first_try.won == []
    holder = first_try.held["shop.orders"]
    assert holder.run_id == "run-a"
    assert holder.expires_at - holder.claimed_at == timedelta(seconds=1)

    result = wait_for(lambda: store.claim("run-b", ["shop.orders"]).won, "run-a's lease to expire")
    assert result == ["shop.orders"]
    assert store.holders(["shop.orders"])["shop.orders"].run_id == "run-b"
    assert store.claim("run-a", ["shop.orders"]).held["shop.orders"].run_id == "run-b"


@pytest.mark.timeout(60)
def test_renew_extends_every_lease_of_the_run_only(make_store):
    store = make_store(lease_seconds=30.0)
    store.claim("run-a", ["shop.orders", "shop.customers"])
    store.claim("run-b", ["shop.payments"])
    before = {c.model: c for c in store.list_claims()}
    time.sleep(0.05)  # let the clock move on, so a renewed expiry is strictly later

    assert store.renew("run-a") == 2
    after = {c.model: c for c in store.list_claims()}
    for model in ("shop.orders", "shop.customers"):
        assert after[model].expires_at > before[model].expires_at
        assert after[model].claimed_at == before[model].claimed_at
        assert after[model].expires_at - after[model].claimed_at > timedelta(seconds=30)
    assert after["shop.payments"] == before["shop.payments"]
    assert store.renew("run-without-claims") == 0


@pytest.mark.timeout(60)
def test_reclaim_by_the_holder_renews_and_keeps_the_claim_time(make_store):
    store = make_store(lease_seconds=30.0)
    store.claim("run-a", ["shop.orders"])
    before = store.holders(["shop.orders"])["shop.orders"]
    time.sleep(0.05)
    assert store.claim("run-a", ["shop.orders", "shop.customers"]).won == ["shop.customers", "shop.orders"]
    after = store.holders(["shop.orders"])["shop.orders"]
    assert (after.claimed_at, after.run_id) == (before.claimed_at, "run-a")
    assert after.expires_at > before.expires_at


@pytest.mark.timeout(60)
def test_heartbeat_keeps_the_claim_alive_past_its_lease_and_stops_on_exit(make_store):
    store = make_store(lease_seconds=2.0)
    store.claim("run-a", ["shop.orders"])
    first_expiry = store.holders(["shop.orders"])["shop.orders"].expires_at

    with LeaseHeartbeat(store, "run-a", interval=0.2) as heartbeat:
        wait_for(lambda: heartbeat.beats >= 12, "12 heartbeats (more than one lease)")
        renewed = store.holders(["shop.orders"])["shop.orders"]
        assert renewed.run_id == "run-a"
        assert renewed.expires_at > first_expiry
        assert store.claim("run-b", ["shop.orders"]).held["shop.orders"].run_id == "run-a"
    beats_at_exit = heartbeat.beats
    assert not any(t.name.startswith("dagctl-lease-") for t in threading.enumerate())

    wait_for(lambda: store.claim("run-b", ["shop.orders"]).won, "run-a's lease to expire after the heartbeat")
    assert store.holders(["shop.orders"])["shop.orders"].run_id == "run-b"
    assert heartbeat.beats == beats_at_exit


@pytest.mark.timeout(60)
def test_heartbeat_logs_database_errors_without_the_password_and_keeps_going(caplog):
    store = ClaimStore("postgresql://dagster:hunter2@127.0.0.1:1/dagster", lease_seconds=0.3)
    caplog.set_level(logging.WARNING, logger="dagctl_dagster.execution.claims")
    with LeaseHeartbeat(store, "run-a", interval=0.05) as heartbeat:
        wait_for(lambda: len(caplog.records) >= 3, "three failed renewals to be logged")
    messages = [record.getMessage() for record in caplog.records]
    assert all(m.startswith("could not renew the claims of run run-a: ") for m in messages)
    assert "postgresql://dagster:***@127.0.0.1:1/dagster" in messages[0]
    assert "hunter2" not in caplog.text
    assert heartbeat.beats == 0


@pytest.mark.timeout(60)
def test_release_is_idempotent_and_frees_only_that_runs_claims(make_store):
    store = make_store()
    store.claim("run-a", ["shop.orders", "shop.customers", "shop.items"])
    store.claim("run-b", ["shop.payments"])

    assert store.release("run-a", ["shop.orders"]) == 1
    assert store.release("run-a", ["shop.orders", "shop.payments"]) == 0
    assert store.release("run-a", []) == 0
    assert store.release("run-a") == 2
    assert store.release("run-a") == 0
    assert [(c.model, c.run_id) for c in store.list_claims()] == [("shop.payments", "run-b")]


@pytest.mark.timeout(60)
def test_claims_of_a_finished_run_are_freed_at_once(make_store):
    store = make_store(lease_seconds=600.0)
    store.claim("run-a", ["shop.orders", "shop.customers"])
    asked: list[str] = []

    def still_running(run_id: str) -> bool:
        asked.append(run_id)
        return False

    result = store.claim("run-b", ["shop.orders", "shop.items"], is_run_finished=still_running)
    assert (result.won, sorted(result.held)) == (["shop.items"], ["shop.orders"])
    assert asked == ["run-a"]

    asked.clear()
    store.claim("run-b", ["shop.items"], is_run_finished=still_running)
    assert asked == []  # its own claims are never checked

    finished = {"run-a"}
    result = store.claim("run-c", ["shop.orders"], is_run_finished=lambda run_id: run_id in finished)
    assert (result.won, result.held) == (["shop.orders"], {})
    # every claim of the finished run is gone, not only the one asked for
    assert [(c.model, c.run_id) for c in store.list_claims()] == [("shop.items", "run-b"), ("shop.orders", "run-c")]


@pytest.mark.timeout(60)
def test_list_claims_marks_expired_rows(make_store):
    store = make_store(lease_seconds=0.2)
    store.claim("run-a", ["shop.orders"])
    wait_for(lambda: store.list_claims()[0].expired, "the lease to expire")
    assert store.holders(["shop.orders"]) == {}
    [claim] = store.list_claims()
    assert (claim.model, claim.run_id, claim.expired) == ("shop.orders", "run-a", True)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://dagster:hunter2@127.0.0.1:1/dagster",
            'claim store postgresql://dagster:***@127.0.0.1:1/dagster failed: connection to server at "127.0.0.1", port 1 failed',
        ),
        (
            "mysql://dagster:hunter2@db/dagster",
            "claim store URL mysql://dagster:***@db/dagster: unsupported database 'mysql'",
        ),
        (
            "postgresql://dagster:hunter2@db:notaport/x",
            "invalid claim store URL postgresql://***@db:notaport/x: invalid literal for int()",
        ),
        (
            "postgres:/:hunter2@@db",
            "invalid claim store URL postgres://***@db: an '@' in the password or a parameter is not percent-encoded",
        ),
        ("sqlite://", "in-memory SQLite database cannot be shared"),
    ],
)
@pytest.mark.timeout(30)
def test_bad_urls_give_a_clear_error_with_the_password_masked(url: str, expected: str):
    with pytest.raises(ClaimStoreError) as raised:
        store = ClaimStore(url)
        store.list_claims()
    assert expected in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_lease_must_be_positive(tmp_path: Path):
    with pytest.raises(ClaimStoreError, match="lease_seconds must be a positive number of seconds, got 0.0"):
        ClaimStore(f"sqlite:///{tmp_path / 'claims.sqlite'}", lease_seconds=0)


@pytest.mark.timeout(120)
def test_from_environment_prefers_url_then_env_then_postgres_instance_then_sqlite(
    postgres_url: str, tmp_path: Path, monkeypatch
):
    from dagster import DagsterInstance

    monkeypatch.delenv("DAGCTL_CLAIMS_URL", raising=False)
    sqlite_home = instance_home(tmp_path / "sqlite_home")
    postgres_home = instance_home(tmp_path / "postgres_home", postgres_url)
    pg_store = ClaimStore(postgres_url)

    def chosen(**kwargs) -> str:
        store = ClaimStore.from_environment(**kwargs)
        store.dispose()
        return store.masked_url

    assert chosen(dagster_home=sqlite_home) == f"sqlite:///{sqlite_home.resolve() / 'dagctl_claims.sqlite'}"
    assert not (sqlite_home / "history").exists()  # a SQLite instance is not loaded, so not created
    assert chosen(dagster_home=postgres_home) == pg_store.masked_url
    instance = DagsterInstance.from_config(str(postgres_home))
    try:
        assert chosen(instance=instance) == pg_store.masked_url
        monkeypatch.setenv("DAGCTL_CLAIMS_URL", f"sqlite:///{tmp_path / 'env.sqlite'}")
        assert chosen(instance=instance) == f"sqlite:///{tmp_path / 'env.sqlite'}"
        assert (
            chosen(instance=instance, url=f"sqlite:///{tmp_path / 'arg.sqlite'}")
            == f"sqlite:///{tmp_path / 'arg.sqlite'}"
        )
    finally:
        instance.dispose()
    monkeypatch.delenv("DAGCTL_CLAIMS_URL")
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    with pytest.raises(ClaimStoreError, match="no claim store configured: set DAGCTL_CLAIMS_URL"):
        ClaimStore.from_environment()

    # the store found through the instance is the same table the PostgreSQL URL reaches
    monkeypatch.setenv("DAGSTER_HOME", str(postgres_home))
    found = ClaimStore.from_environment(lease_seconds=5)
    try:
        found.claim("run-a", ["shop.orders"])
        assert [(c.model, c.run_id) for c in pg_store.list_claims()] == [("shop.orders", "run-a")]
        assert found.lease_seconds == 5
    finally:
        found.dispose()
        pg_store.dispose()


@pytest.mark.timeout(60)
def test_a_large_batch_is_claimed_in_one_call(make_store):
    store = make_store()
    models = [f"warehouse.model_{i:05d}" for i in range(3000)]
    assert store.claim("run-a", models).won == models
    second = store.claim("run-b", [*models[:10], "warehouse.extra"])
    assert (second.won, len(second.held)) == (["warehouse.extra"], 10)
    assert {c.run_id for c in second.held.values()} == {"run-a"}
    assert store.release("run-a") == 3000


@pytest.mark.timeout(60)
def test_a_dropped_pooled_connection_is_replaced_transparently(postgres_url: str):
    """No pre-ping on checkout: a connection the server dropped is retried once on a new one."""
    import sqlalchemy as sa

    store = ClaimStore(postgres_url)
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        store.claim("run-a", ["shop.orders", "shop.customers"])
        with admin.connect() as conn:
            terminated = conn.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
        assert terminated >= 1
        assert store.release("run-a", ["shop.orders"]) == 1
        assert [(c.model, c.run_id) for c in store.list_claims()] == [("shop.customers", "run-a")]
    finally:
        store.dispose()
        admin.dispose()


@pytest.mark.timeout(120)
def test_benchmark_run_reports_its_numbers_and_drops_its_database(postgres_server_url: str):
    import sqlalchemy as sa

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks.bench_claims import markdown_row, run

    result = run(url=postgres_server_url, clients=4, operations=200, batch_size=3, models=20)
    assert (result["backend"], result["clients"], result["operations"], result["double_wins"]) == (
        "postgresql",
        4,
        200,
        0,
    )
    assert result["held_by_another"] > 0  # 4 clients on 20 models do collide
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert markdown_row(result).startswith("| postgresql | 4 | 3 | 200 | ")
    admin = sa.create_engine(postgres_server_url)
    with admin.connect() as conn:
        left = conn.execute(sa.text("SELECT datname FROM pg_database WHERE datname LIKE 'dagctl_bench_claims_%'")).all()
    admin.dispose()
    assert left == []


def test_sqlite_claims_commit_to_a_write_ahead_log(tmp_path: Path):
    """A run confirms its claims before every model it starts: on SQLite those commits go
    to a write-ahead log (no disk sync per commit), and a second process still sees them."""
    import sqlite3

    url = f"sqlite:///{tmp_path / 'claims.sqlite'}"
    store = ClaimStore(url)
    try:
        store.claim("run-a", ["m"], is_run_finished=lambda _run_id: False)
        assert store.renew_held("run-a", ["m"]) == {"m"}
        with sqlite3.connect(tmp_path / "claims.sqlite") as reader:
            assert reader.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        other = ClaimStore(url)
        try:
            assert {c.model: c.run_id for c in other.list_claims()} == {"m": "run-a"}
        finally:
            other.dispose()
    finally:
        store.dispose()
