"""The claim store: which run holds which model, as leases in PostgreSQL or SQLite.

A run claims all its models in one batch before executing any. It wins every model that
is free, whose lease has expired, or that it already holds (re-claiming renews the lease);
the rest are reported with their holder. Each model is won by at most one run at a time,
also under concurrent claims from many threads, processes and hosts: the batch is a single
``INSERT ... ON CONFLICT (model) DO UPDATE ... WHERE <lease expired or same run> RETURNING``
statement, and the database decides every row. With PostgreSQL, lease times come from the
database server's clock, so run workers with skewed clocks agree on what has expired.

Usage::

    store = ClaimStore.from_environment(instance=context.instance)
    result = store.claim(run_id, ["shop.orders", "shop.customers"])
    result.won    # ["shop.orders"]
    result.held   # {"shop.customers": Claim(run_id="9f3c...", expires_at=...)}
    with LeaseHeartbeat(store, run_id):   # renews the leases until the block exits
        ...
    store.release(run_id, ["shop.orders"])
    store.dispose()
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

import sqlalchemy as sa

from dagctl_dagster.secrets import mask_url, redact, unescaped_password_problem, url_secrets
from dagctl_dagster.settings import (
    DEFAULT_CLAIMS_TIMEOUT_SECONDS,
    DEFAULT_LEASE_SECONDS,
    MAX_LEASE_SECONDS,
    InvalidClaimsTimeout,
    parse_claims_timeout_seconds,
)

logger = logging.getLogger(__name__)

CLAIMS_URL_ENV = "DAGCTL_CLAIMS_URL"
SQLITE_FILE_NAME = "dagctl_claims.sqlite"

# Arbitrary constant key: serialises concurrent CREATE TABLE in PostgreSQL.
_SCHEMA_LOCK_KEY = 0x64616763
# Rounds of "claim; free the claims of finished holder runs, retry models released
# mid-claim; claim again". Each round settles almost everything; the bound only stops churn.
_MAX_CLAIM_ROUNDS = 8
_ATTEMPTS = 5
_SQLITE_BUSY_TIMEOUT_SECONDS = 30.0
# A claim-store statement or connection that takes longer than the store's timeout
# (``timeout_seconds``, 10 s by default) has stalled: the run fails fast and visibly instead
# of waiting for a TCP timeout. Keepalives notice a dead peer.
# The server's statement timeout cannot end a statement the server never received (a stalled
# network path or proxy), and keepalives see a live peer there: past the timeout plus this
# margin the client shuts the connection's socket itself.
_CLIENT_DEADLINE_MARGIN_SECONDS = 2


def _postgres_timeouts(seconds: int) -> dict[str, Any]:
    return {
        "connect_timeout": seconds,
        "options": f"-c statement_timeout={seconds * 1000} -c lock_timeout={seconds * 1000}",
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 3,
    }


metadata = sa.MetaData()
claims_table = sa.Table(
    "dagctl_claims",
    metadata,
    sa.Column("model", sa.Text, primary_key=True),
    sa.Column("run_id", sa.Text, nullable=False),
    sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("host", sa.Text, nullable=True),
    sa.Column("pid", sa.Integer, nullable=True),
    sa.Index("ix_dagctl_claims_run_id", "run_id"),
)


class ClaimStoreError(Exception):
    """The claim store cannot be reached or used; the message names the (masked) URL."""


@dataclass(frozen=True)
class Claim:
    """One model's lease: held by ``run_id`` from ``claimed_at`` until ``expires_at``."""

    model: str
    run_id: str
    claimed_at: datetime
    expires_at: datetime
    host: str | None = None
    pid: int | None = None
    expired: bool = False


@dataclass(frozen=True)
class ClaimResult:
    """The outcome of one ``claim`` batch: models won, and the holder of each other model."""

    won: list[str]
    held: dict[str, Claim]


_Operation = TypeVar("_Operation", bound=Callable[..., Any])


def _database_operation(method: _Operation) -> _Operation:
    """Run a store operation; retry what is safe to retry; name the store in errors.

    Every operation is idempotent (a re-claim by the same run only renews), so re-running
    one that PostgreSQL aborted as a deadlock victim, or whose pooled connection had been
    dropped (database restart, idle timeout), cannot do anything twice.
    """

    @functools.wraps(method)
    def wrapper(self: ClaimStore, *args: Any, **kwargs: Any) -> Any:
        for attempt in range(_ATTEMPTS):
            try:
                return method(self, *args, **kwargs)
            except sa.exc.DBAPIError as exc:
                retriable = _is_deadlock(exc) or (exc.connection_invalidated and attempt == 0)
                if retriable and attempt < _ATTEMPTS - 1:
                    time.sleep(0.01 * (attempt + 1))
                    continue
                if exc.connection_invalidated or isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
                    raise ClaimStoreError(f"claim store {self.masked_url} failed: {self.describe(exc)}") from None
                raise
        raise AssertionError("unreachable")

    return cast(_Operation, wrapper)


class ClaimStore:
    """Model claims as leases in a ``dagctl_claims`` table (PostgreSQL, or SQLite locally).

    Example::

        store = ClaimStore("postgresql://dagster:***@db:5432/dagster", lease_seconds=60)
        result = store.claim(run_id, ["shop.orders"], is_run_finished=lambda r: False)

    Connections are opened on first use; the table is created then if missing.
    """

    def __init__(
        self,
        url: str,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        timeout_seconds: int = DEFAULT_CLAIMS_TIMEOUT_SECONDS,
    ):
        try:
            self.timeout_seconds = parse_claims_timeout_seconds(timeout_seconds, source="timeout_seconds")
        except InvalidClaimsTimeout as exc:
            raise ClaimStoreError(str(exc)) from None
        lease_seconds = float(lease_seconds)
        if not lease_seconds > 0:
            raise ClaimStoreError(f"lease_seconds must be a positive number of seconds, got {lease_seconds!r}")
        if not lease_seconds <= MAX_LEASE_SECONDS:
            raise ClaimStoreError(
                f"lease_seconds must be at most {MAX_LEASE_SECONDS:g} seconds (one day), got {lease_seconds!r}"
            )
        self.lease_seconds = lease_seconds
        self.masked_url = mask_url(url)
        self._url_secrets = url_secrets(url)
        self._engine = self._create_engine(url)
        self._is_postgres = self._engine.dialect.name == "postgresql"
        self._schema_ready = False
        self._schema_lock = threading.Lock()
        self._host = socket.gethostname()

    @classmethod
    def from_environment(
        cls,
        instance: Any | None = None,
        url: str | None = None,
        dagster_home: str | os.PathLike[str] | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        timeout_seconds: int = DEFAULT_CLAIMS_TIMEOUT_SECONDS,
    ) -> ClaimStore:
        """The store this deployment uses, from the first of these that is set:

        1. ``url``;
        2. env var ``DAGCTL_CLAIMS_URL``;
        3. the Dagster instance's PostgreSQL database, when its storage is dagster-postgres
           (``instance``, else the ``dagster.yaml`` in ``dagster_home`` / ``$DAGSTER_HOME``);
        4. the SQLite file ``<dagster home>/dagctl_claims.sqlite``.
        """
        chosen = url or os.environ.get(CLAIMS_URL_ENV)
        if not chosen:
            home = dagster_home or _instance_home(instance) or os.environ.get("DAGSTER_HOME")
            if instance is None and home:
                chosen = _postgres_url_from_dagster_yaml(Path(home))
            elif instance is not None:
                chosen = _postgres_url_of_instance(instance)
            if not chosen:
                if not home:
                    raise ClaimStoreError(
                        "no claim store configured: set DAGCTL_CLAIMS_URL (a SQLAlchemy URL), "
                        "use a Dagster instance with dagster-postgres storage, or set DAGSTER_HOME "
                        f"to keep claims in $DAGSTER_HOME/{SQLITE_FILE_NAME}"
                    )
                chosen = f"sqlite:///{Path(home).resolve() / SQLITE_FILE_NAME}"
        return cls(chosen, lease_seconds=lease_seconds, timeout_seconds=timeout_seconds)

    # -- public operations -------------------------------------------------------------

    def claim(
        self,
        run_id: str,
        models: Sequence[str],
        *,
        is_run_finished: Callable[[str], bool] | None = None,
    ) -> ClaimResult:
        """Claim ``models`` for ``run_id`` in one batch; see the module docstring for the rules.

        ``is_run_finished(holder_run_id)`` (optional) lets a finished holder's claims be
        freed at once instead of waiting for its leases to expire.
        """
        pending = sorted(set(models))
        won: list[str] = []
        held: dict[str, Claim] = {}
        finished_checked: dict[str, bool] = {}
        for _ in range(_MAX_CLAIM_ROUNDS):
            if not pending:
                break
            round_won, round_held = self._claim_round(run_id, pending)
            won.extend(round_won)
            held = {**held, **round_held}
            # A model neither won nor held was released between the two statements: retry it.
            pending = [m for m in pending if m not in round_won and m not in round_held]
            finished_holders = self._finished_holders(round_held, is_run_finished, finished_checked)
            if finished_holders:
                self._release_runs(finished_holders)
                freed = [m for m, c in round_held.items() if c.run_id in finished_holders]
                for model in freed:
                    held.pop(model)
                pending = sorted({*pending, *freed})
        if pending:  # never seen; would need the models to change hands every round
            raise ClaimStoreError(
                f"claim store {self.masked_url}: models {pending[:5]} kept changing hands while run "
                f"{run_id} claimed them ({_MAX_CLAIM_ROUNDS} rounds); try again"
            )
        return ClaimResult(won=sorted(won), held=dict(sorted(held.items())))

    @_database_operation
    def release(self, run_id: str, models: Sequence[str] | None = None) -> int:
        """Delete ``run_id``'s claims (only those on ``models`` if given); returns how many."""
        if models is not None and not models:
            return 0
        statement = self._release_of_models if models is not None else self._release_of_run
        with self._write() as conn:
            return conn.execute(statement, {"run_id": run_id, "models": sorted(set(models or ()))}).rowcount

    @_database_operation
    def renew(self, run_id: str) -> int:
        """Extend every lease ``run_id`` holds to a full lease from now; returns how many."""
        statement = (
            sa.update(claims_table).where(claims_table.c.run_id == run_id).values(expires_at=self._now_and_expiry()[1])
        )
        with self._write() as conn:
            return conn.execute(statement).rowcount

    @_database_operation
    def renew_held(self, run_id: str, models: Sequence[str]) -> set[str]:
        """Extend ``run_id``'s unexpired leases on ``models``; returns the models still held.

        A model missing from the answer is lost: released (by an operator), expired while
        this run could not renew it (paused, partitioned), or taken by another run since.
        """
        if not models:
            return set()
        parameters: dict[str, Any] = {"holder": run_id, "models": sorted(set(models))}
        if not self._is_postgres:
            parameters["now"], parameters["expires"] = self._now_and_expiry()
        with self._write() as conn:
            return {row.model for row in conn.execute(self._renew_held_statement, parameters)}

    @functools.cached_property
    def _renew_held_statement(self) -> sa.Executable:
        """Built once: a step's claim confirmation runs it before every model step starts."""
        if self._is_postgres:
            now, expiry = self._now_and_expiry()
        else:
            now, expiry = sa.bindparam("now", type_=sa.DateTime()), sa.bindparam("expires", type_=sa.DateTime())
        return (
            sa.update(claims_table)
            .where(claims_table.c.run_id == sa.bindparam("holder"))
            .where(claims_table.c.model.in_(sa.bindparam("models", expanding=True)))
            .where(claims_table.c.expires_at >= now)
            .values(expires_at=expiry)
            .returning(claims_table.c.model)
        )

    @_database_operation
    def list_claims(self) -> list[Claim]:
        """Every claim row, expired ones included (``Claim.expired``), ordered by model."""
        return self._select_claims(None, live_only=False)

    @_database_operation
    def holders(self, models: Sequence[str]) -> dict[str, Claim]:
        """The live (unexpired) claim on each of ``models`` that has one."""
        if not models:
            return {}
        return {c.model: c for c in self._select_claims(sorted(set(models)), live_only=True)}

    @_database_operation
    def ensure_schema(self) -> None:
        """Create the ``dagctl_claims`` table if missing; safe when many processes start at once."""
        if self._schema_ready:
            return
        with self._schema_lock:
            if self._schema_ready:
                return
            with self._transaction() as conn:
                if self._is_postgres:
                    conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SCHEMA_LOCK_KEY)))
                metadata.create_all(conn, checkfirst=True)
            self._schema_ready = True

    @property
    def engine(self) -> sa.Engine:
        """The store's database engine; paused models (:mod:`.pauses`) live in the same database."""
        return self._engine

    def dispose(self) -> None:
        """Close the store's pooled connections (it reconnects if used again)."""
        self._engine.dispose()

    def describe(self, exc: BaseException) -> str:
        """The driver's message for ``exc``, with the URL's password and secret env values masked."""
        return redact(_describe(exc), self._url_secrets)

    def __repr__(self) -> str:
        return f"ClaimStore({self.masked_url!r}, lease_seconds={self.lease_seconds})"

    # -- statements --------------------------------------------------------------------

    @_database_operation
    def _claim_round(self, run_id: str, models: list[str]) -> tuple[list[str], dict[str, Claim]]:
        """One upsert of the whole batch, then the holders of the models it did not win."""
        params: dict[str, Any] = {"run_id": run_id, "host": self._host, "pid": os.getpid()}
        if self._is_postgres:
            params |= {"models": models, "lease": self.lease_seconds}
        else:
            now, expires = self._now_and_expiry()
            params |= {"models": json.dumps(models), "now": now, "expires": expires}
        with self._write() as conn:
            won = {row.model for row in conn.execute(self._upsert, params)}
            lost = [m for m in models if m not in won]
            held = self._select_claims(lost, live_only=False, conn=conn) if lost else []
        return sorted(won), {c.model: c for c in held}

    @functools.cached_property
    def _upsert(self) -> sa.TextualSelect:
        """The batch upsert, as SQL text: SQLAlchemy does not cache compiled dialect ``insert``
        constructs (ON CONFLICT), and compiling one per claim cost more than the database.
        The batch is one array (PostgreSQL) or JSON list (SQLite) parameter, so the statement
        is the same for any batch size; rows go in sorted order, so concurrent batches lock
        rows in the same order."""
        if self._is_postgres:  # times from the server's clock
            source = (
                "SELECT batch.model, :run_id, statement_timestamp(),"
                " statement_timestamp() + make_interval(secs => :lease), :host, :pid"
                " FROM unnest(CAST(:models AS TEXT[])) AS batch(model) ORDER BY batch.model"
            )
        else:
            source = (
                "SELECT batch.value, :run_id, :now, :expires, :host, :pid"
                " FROM json_each(:models) AS batch WHERE true ORDER BY batch.value"
            )
        statement = sa.text(
            "INSERT INTO dagctl_claims AS held (model, run_id, claimed_at, expires_at, host, pid) "
            f"{source} "
            "ON CONFLICT (model) DO UPDATE SET"
            " run_id = excluded.run_id,"
            # a re-claim by the holder renews the lease but keeps the original claim time
            " claimed_at = CASE WHEN held.run_id = excluded.run_id THEN held.claimed_at ELSE excluded.claimed_at END,"
            " expires_at = excluded.expires_at, host = excluded.host, pid = excluded.pid"
            " WHERE held.expires_at < excluded.claimed_at OR held.run_id = excluded.run_id"
            " RETURNING model"
        )
        if not self._is_postgres:
            statement = statement.bindparams(
                sa.bindparam("now", type_=sa.DateTime()), sa.bindparam("expires", type_=sa.DateTime())
            )
        return statement.columns(model=sa.Text)

    @functools.cached_property
    def _release_of_run(self) -> sa.Executable:
        return self._release_statement(by_model=False)

    @functools.cached_property
    def _release_of_models(self) -> sa.Executable:
        return self._release_statement(by_model=True)

    def _release_statement(self, by_model: bool) -> sa.Executable:
        """PostgreSQL: the DELETE does not wait for its commit to reach disk (both statements
        run as one implicit transaction). Were the server to crash just then, the claim would
        only stay until its lease ends; the flush cost about as much as claim+release else."""
        if self._is_postgres:
            models = " AND model = ANY(CAST(:models AS TEXT[]))" if by_model else ""
            return sa.text(
                f"SET LOCAL synchronous_commit TO OFF; DELETE FROM dagctl_claims WHERE run_id = :run_id{models}"
            )
        statement = sa.delete(claims_table).where(claims_table.c.run_id == sa.bindparam("run_id"))
        if by_model:
            statement = statement.where(claims_table.c.model.in_(sa.bindparam("models", expanding=True)))
        return statement

    @_database_operation
    def _release_runs(self, run_ids: set[str]) -> None:
        with self._write() as conn:
            conn.execute(sa.delete(claims_table).where(claims_table.c.run_id.in_(sorted(run_ids))))

    def _select_claims(
        self, models: list[str] | None, *, live_only: bool, conn: sa.Connection | None = None
    ) -> list[Claim]:
        table = claims_table
        expired = (table.c.expires_at < self._now()).label("expired")
        statement = sa.select(table, expired).order_by(table.c.model)
        if models is not None:
            statement = statement.where(table.c.model.in_(models))
        if live_only:
            statement = statement.where(table.c.expires_at >= self._now())
        if conn is not None:
            return [_claim_from_row(row) for row in conn.execute(statement)]
        with self._read() as read_conn:
            return [_claim_from_row(row) for row in read_conn.execute(statement)]

    @staticmethod
    def _finished_holders(
        held: Mapping[str, Claim],
        is_run_finished: Callable[[str], bool] | None,
        checked: dict[str, bool],
    ) -> set[str]:
        if is_run_finished is None:
            return set()
        for holder in sorted({c.run_id for c in held.values()} - checked.keys()):
            checked[holder] = bool(is_run_finished(holder))
        return {c.run_id for c in held.values() if checked[c.run_id]}

    # -- time: the database server's clock for PostgreSQL; this host's for a (local) SQLite file

    def _now(self) -> Any:
        if self._is_postgres:
            return sa.func.statement_timestamp(type_=sa.DateTime(timezone=True))
        return datetime.now(UTC).replace(tzinfo=None)

    def _now_and_expiry(self) -> tuple[Any, Any]:
        """Now and now + one lease; both the same instant (``statement_timestamp()`` in PostgreSQL)."""
        if self._is_postgres:
            expiry = sa.literal_column(
                f"(statement_timestamp() + make_interval(secs => {self.lease_seconds!r}))",
                type_=sa.DateTime(timezone=True),
            )
            return self._now(), expiry
        now = self._now()
        return now, now + timedelta(seconds=self.lease_seconds)

    # -- connections -------------------------------------------------------------------

    def _create_engine(self, url: str) -> sa.Engine:
        problem = unescaped_password_problem(url)
        if problem:
            raise ClaimStoreError(f"invalid claim store URL {self.masked_url}: {problem}")
        try:
            parsed = _with_default_driver(sa.engine.make_url(url))
            if parsed.get_backend_name() == "sqlite":
                return self._create_sqlite_engine(parsed)
            if parsed.get_backend_name() != "postgresql":
                raise ClaimStoreError(
                    f"claim store URL {self.masked_url}: unsupported database "
                    f"'{parsed.get_backend_name()}'; use a postgresql:// or sqlite:/// URL"
                )
            # QueuePool opens connections lazily, on first checkout. No pre-ping (a round trip
            # per checkout): a dropped connection is retried once instead (_database_operation).
            return sa.create_engine(
                parsed,
                pool_size=2,
                max_overflow=8,
                pool_recycle=1800,
                pool_timeout=self.timeout_seconds,
                isolation_level="AUTOCOMMIT",
                connect_args=_postgres_timeouts(self.timeout_seconds),
            )
        except ClaimStoreError:
            raise
        except Exception as exc:
            raise ClaimStoreError(f"invalid claim store URL {self.masked_url}: {self.describe(exc)}") from None

    def _create_sqlite_engine(self, parsed: sa.URL) -> sa.Engine:
        if parsed.database in (None, "", ":memory:"):
            raise ClaimStoreError(
                f"claim store URL {self.masked_url}: an in-memory SQLite database cannot be shared "
                "between runs; use a file, e.g. sqlite:////path/to/dagctl_claims.sqlite"
            )
        Path(str(parsed.database)).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            parsed, pool_size=2, max_overflow=8, connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_SECONDS}
        )

        # pysqlite's own implicit BEGIN is deferred; take the write lock up front instead, so
        # a transaction never fails half-way trying to upgrade a read lock (SQLAlchemy's recipe).
        @sa.event.listens_for(engine, "connect")
        def _disable_pysqlite_begin(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            # Write-ahead log: a commit appends to the log without syncing the disk, where the
            # default rollback journal syncs several times per commit, and a run commits before
            # every model it starts. A power loss can forget the last commits, never corrupt the
            # file; a forgotten claim or renewal only shortens a lease. WAL needs a local disk
            # (not NFS), as SQLite claims are for runs on one machine (PostgreSQL otherwise).
            _use_write_ahead_log(dbapi_connection)
            dbapi_connection.execute("PRAGMA synchronous=NORMAL")

        @sa.event.listens_for(engine, "begin")
        def _begin_immediate(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    @contextmanager
    def _transaction(self) -> Iterator[sa.Connection]:
        """A connection whose statements commit together (SQLite: under BEGIN IMMEDIATE)."""
        with self._engine.connect() as conn:
            if self._is_postgres:
                conn = conn.execution_options(isolation_level="READ COMMITTED")
            with conn.begin():
                yield conn

    @contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        """A connection for one store operation.

        PostgreSQL: each statement commits on its own (autocommit), saving the BEGIN and
        COMMIT round trips; every operation is one statement, or statements that need not
        be atomic together. SQLite: one BEGIN IMMEDIATE transaction.
        """
        self.ensure_schema()
        if self._is_postgres:
            deadline = self.timeout_seconds + _CLIENT_DEADLINE_MARGIN_SECONDS
            with self._engine.connect() as conn, _Watchdog(conn, deadline) as watchdog:
                try:
                    yield conn
                except sa.exc.DBAPIError:
                    if watchdog.fired:
                        raise ClaimStoreError(
                            f"claim store {self.masked_url} did not answer within {deadline}s "
                            "(timeout: the connection stalled); the connection was closed"
                        ) from None
                    raise
        else:
            with self._transaction() as conn:
                yield conn

    _read = _write


def _use_write_ahead_log(dbapi_connection: Any) -> None:
    """Switch the file to WAL once; the mode is stored in the file, so later connections find it.

    The switch needs the file to itself, and SQLite refuses it at once (no busy wait) while
    another process uses the file: that connection then works in the rollback journal, and
    a later one switches.
    """
    import sqlite3

    if dbapi_connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        return
    try:
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError:
        pass


class _Watchdog:
    """Shuts down a PostgreSQL connection's socket when one operation outlasts ``seconds``;
    the blocked driver call then fails at once instead of waiting for an answer forever."""

    def __init__(self, conn: sa.Connection, seconds: float):
        self._fileno = conn.connection.dbapi_connection.fileno()  # type: ignore[union-attr]
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._lock = threading.Lock()
        self._done = False
        self.fired = False

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        # Under the lock, so the socket is never shut after the connection went back to the pool.
        with self._lock:
            self._done = True
        self._timer.cancel()

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
            try:
                with socket.socket(fileno=os.dup(self._fileno)) as duplicate:
                    duplicate.shutdown(socket.SHUT_RDWR)
            except OSError:  # already closed
                pass


@dataclass(frozen=True)
class RenewalReport:
    """One renewal's outcome: the models found lost, or the error that prevented renewing."""

    lost: frozenset[str] = frozenset()
    error: str | None = None


class ClaimOwnership:
    """The models a run still holds, as far as the claim store last confirmed.

    A model is lost when a renewal does not return it (released by an operator, expired
    while the worker could not renew, taken by another run since). :meth:`holds` is the
    check before any work on a model starts: it renews those models in the store, every
    time, because an operator's forced release is invisible until the store is asked (an
    answer cached from the last heartbeat let a run start models another run had claimed).
    When the store cannot answer, the models are not held for that check; after a whole
    lease without a successful renewal every claim counts as lost, so a stalled or dead
    store fails the remaining models at once instead of one timeout each.
    """

    def __init__(self, store: ClaimStore, run_id: str, won: Sequence[str]):
        self.store = store
        self.run_id = run_id
        self._held = set(won)
        self._lost: set[str] = set()
        self._confirmed_at = time.monotonic()
        self._lock = threading.Lock()
        self._reports: list[RenewalReport] = []

    @property
    def lost(self) -> set[str]:
        with self._lock:
            return set(self._lost)

    def released(self, models: Sequence[str]) -> None:
        with self._lock:
            self._held.difference_update(models)

    def holds(self, models: Sequence[str]) -> bool:
        wanted = set(models)
        if not wanted:
            return True
        with self._lock:
            if wanted & self._lost:
                return False
        return self._renew(wanted) is None

    def renew(self) -> RenewalReport | None:
        """Renews every held lease; a report when something was lost or failed, else None."""
        with self._lock:
            held = set(self._held - self._lost)
        return self._renew(held, confirms_all=True)

    def reports(self) -> list[RenewalReport]:
        with self._lock:
            reports, self._reports = self._reports, []
        return reports

    def _renew(self, models: set[str], *, confirms_all: bool = False) -> RenewalReport | None:
        started = time.monotonic()
        report: RenewalReport | None
        try:
            kept = self.store.renew_held(self.run_id, sorted(models)) if models else set()
        except Exception as exc:
            with self._lock:
                expired = time.monotonic() - self._confirmed_at >= self.store.lease_seconds
                lost = frozenset(self._held - self._lost) if expired else frozenset()
                self._lost.update(lost)
            report = RenewalReport(lost=lost, error=self.store.describe(exc))
            logger.warning("could not renew the claims of run %s: %s", self.run_id, report.error)
        else:
            lost = frozenset(models - kept)
            report = RenewalReport(lost=lost) if lost else None
            with self._lock:
                self._lost.update(lost)
                if confirms_all:
                    self._confirmed_at = started
        if report is not None:
            with self._lock:
                self._reports.append(report)
        return report


class LeaseHeartbeat:
    """Renews the run's leases every ``interval`` seconds until the block exits.

    Example::

        with LeaseHeartbeat(store, run_id):      # interval: a third of the lease
            run_models()

    With ``ownership``, each beat renews only what the run still holds and records what was
    lost (:class:`ClaimOwnership`); without, it renews every lease of ``run_id``. Errors are
    logged (and recorded) and retried at the next beat.
    """

    def __init__(
        self,
        store: ClaimStore,
        run_id: str,
        interval: float | None = None,
        ownership: ClaimOwnership | None = None,
    ):
        self.store = store
        self.run_id = run_id
        self.interval = float(interval) if interval is not None else store.lease_seconds / 3
        if not self.interval > 0:
            raise ValueError(f"heartbeat interval must be positive, got {self.interval!r}")
        self.beats = 0
        self._ownership = ownership
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LeaseHeartbeat:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"dagctl-lease-{self.run_id[:8]}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            # A renew in flight finishes first; it is bounded by the statement and busy timeouts.
            self._thread.join(timeout=self.interval + _SQLITE_BUSY_TIMEOUT_SECONDS)
            self._thread = None

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            if self._ownership is not None:
                self._ownership.renew()
                self.beats += 1
                continue
            try:
                self.store.renew(self.run_id)
                self.beats += 1
            except Exception as exc:  # keep beating: the next renew may succeed within the lease
                logger.warning("could not renew the claims of run %s: %s", self.run_id, self.store.describe(exc))


# -- helpers ---------------------------------------------------------------------------


def _claim_from_row(row: sa.Row) -> Claim:
    return Claim(
        model=row.model,
        run_id=row.run_id,
        claimed_at=_as_utc(row.claimed_at),
        expires_at=_as_utc(row.expires_at),
        host=row.host,
        pid=row.pid,
        expired=bool(row.expired),
    )


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _is_deadlock(exc: sa.exc.DBAPIError) -> bool:
    # 40P01 deadlock_detected, 40001 serialization_failure
    return getattr(exc.orig, "pgcode", None) in ("40P01", "40001")


def _with_default_driver(parsed: sa.URL) -> sa.URL:
    # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; this project ships psycopg2
    # (as dagster-postgres does), so a URL without a driver uses it.
    if parsed.drivername in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg2")
    return parsed


def _describe(exc: BaseException) -> str:
    """The driver's own message, without SQL text, parameters or SQLAlchemy's links."""
    cause = getattr(exc, "orig", None) or exc
    return " ".join(str(cause).split()) or type(cause).__name__


def _instance_home(instance: Any | None) -> str | None:
    if instance is None or not getattr(instance, "is_persistent", False):
        return None
    return getattr(instance, "root_directory", None)


def _postgres_url_of_instance(instance: Any) -> str | None:
    """The PostgreSQL URL of a Dagster instance whose run storage is dagster-postgres."""
    return getattr(instance.run_storage, "postgres_url", None)


def _postgres_url_from_dagster_yaml(home: Path) -> str | None:
    """Load the instance only when its dagster.yaml uses PostgreSQL storage (loading a SQLite
    instance would create its storage files as a side effect)."""
    config_file = home / "dagster.yaml"
    if not config_file.is_file():
        return None
    import yaml

    config = yaml.safe_load(config_file.read_text()) or {}
    storage = config.get("storage") or {}
    run_storage = config.get("run_storage") or {}
    uses_postgres = "postgres" in storage or str(run_storage.get("module", "")).startswith("dagster_postgres")
    if not uses_postgres:
        return None
    from dagster import DagsterInstance

    instance = DagsterInstance.from_config(str(home))
    try:
        return _postgres_url_of_instance(instance)
    finally:
        instance.dispose()
