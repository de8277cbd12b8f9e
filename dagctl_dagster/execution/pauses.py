"""Paused models: which model an operator has paused, why, by whom and since when.

Pauses live in a ``dagctl_pauses`` table in the claim store's database (PostgreSQL, or the
SQLite file beside the Dagster instance), so every run worker of a deployment sees them and
they survive restarts. A run reads them once, before it claims: a paused model is not
claimed, its step is skipped with the pause's reason and author, and so is everything
downstream of it in that run. Models are named by their asset key (``demo/orders``).

Usage::

    pauses = PauseStore.of(ClaimStore.from_environment())
    pauses.pause("demo/orders", project="shop", reason="source broken, see INC-12", by="alice")
    pauses.paused(["demo/orders", "demo/items"])   # {"demo/orders": Pause(...)}
    pauses.resume("demo/orders")                    # True: it was paused
"""

from __future__ import annotations

import getpass
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from collections.abc import Sequence

    from dagctl_dagster.execution.claims import ClaimStore

MAX_REASON_CHARS = 500

pause_metadata = sa.MetaData()
pauses_table = sa.Table(
    "dagctl_pauses",
    pause_metadata,
    sa.Column("model", sa.Text, primary_key=True),
    sa.Column("project", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("paused_by", sa.Text, nullable=False),
    sa.Column("paused_at", sa.DateTime(timezone=True), nullable=False),
)


class PauseError(ValueError):
    """A pause request that cannot be carried out; the message says what to do."""


@dataclass(frozen=True)
class Pause:
    model: str
    project: str
    reason: str
    paused_by: str
    paused_at: datetime

    def describe(self) -> str:
        """``paused by alice since 2026-11-29 18:00 UTC: reason``, for skip events and listings."""
        return f"paused by {self.paused_by} since {self.paused_at:%Y-%m-%d %H:%M} UTC: {self.reason}"


def current_user() -> str:
    """The OS user, the default author of a pause."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class PauseStore:
    """Pauses in the claim store's database; the table is created on first use."""

    def __init__(self, engine: sa.Engine):
        self._engine = engine
        self._schema_ready = False

    @classmethod
    def of(cls, claims: ClaimStore) -> PauseStore:
        return cls(claims.engine)

    def pause(self, model: str, *, project: str, reason: str, by: str | None = None) -> Pause:
        """Pauses ``model`` (again: the new reason and author replace the old ones)."""
        reason = reason.strip()
        if not reason:
            raise PauseError('a pause needs a reason (--reason "..."): the skip events show it to everyone')
        if len(reason) > MAX_REASON_CHARS:
            raise PauseError(f"the reason is {len(reason)} characters long; keep it under {MAX_REASON_CHARS}")
        pause = Pause(model, project, reason, (by or current_user()).strip() or "unknown", datetime.now(UTC))
        with self._begin() as conn:
            conn.execute(sa.delete(pauses_table).where(pauses_table.c.model == model))
            conn.execute(
                sa.insert(pauses_table).values(
                    model=model,
                    project=project,
                    reason=pause.reason,
                    paused_by=pause.paused_by,
                    paused_at=pause.paused_at,
                )
            )
        return pause

    def resume(self, model: str) -> bool:
        """Lifts the pause; False when ``model`` was not paused."""
        with self._begin() as conn:
            return conn.execute(sa.delete(pauses_table).where(pauses_table.c.model == model)).rowcount > 0

    def list(self, project: str | None = None) -> list[Pause]:
        statement = sa.select(pauses_table).order_by(pauses_table.c.model)
        if project is not None:
            statement = statement.where(pauses_table.c.project == project)
        with self._begin() as conn:
            return [_pause_from_row(row) for row in conn.execute(statement)]

    def paused(self, models: Sequence[str]) -> dict[str, Pause]:
        """The pauses among ``models``, by model."""
        if not models:
            return {}
        wanted = set(models)
        return {p.model: p for p in self.list() if p.model in wanted}

    def _begin(self) -> AbstractContextManager[sa.Connection]:
        self._ensure_schema()
        return self._engine.begin()

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        try:
            pause_metadata.create_all(self._engine, checkfirst=True)
        except sa.exc.IntegrityError:  # another process created it at the same moment
            pass
        except sa.exc.ProgrammingError:
            pass
        self._schema_ready = True


def _pause_from_row(row: sa.Row) -> Pause:
    paused_at = row.paused_at if row.paused_at.tzinfo else row.paused_at.replace(tzinfo=UTC)
    return Pause(row.model, row.project, row.reason, row.paused_by, paused_at.astimezone(UTC))


def pauses_of_project(instance: Any, project: str) -> dict[str, str]:
    """The paused models of ``project`` in the deployment's store (asset keys as ``a/b``), with
    who paused each and why: for work that runs outside a run's claims (a plan job). An
    ephemeral instance with no store configured (a test's in-process run) has no pauses."""
    import os

    from dagctl_dagster.execution.claims import CLAIMS_URL_ENV, ClaimStore

    if instance.is_ephemeral and not os.environ.get(CLAIMS_URL_ENV) and not os.environ.get("DAGSTER_HOME"):
        return {}
    store = ClaimStore.from_environment(instance=instance)
    try:
        return {pause.model: pause.describe() for pause in PauseStore.of(store).list(project)}
    finally:
        store.dispose()
