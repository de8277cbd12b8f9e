"""Why a step did not run its models, as a typed value the step records and others read.

A model step that does not evaluate its model for a reason other than the model failing (it
is not in the environment, the project's first plan failed, the run lost the model's claim,
the run was stopped) records a :class:`NotRun` in its run's :class:`NotRunLedger`, through
the :class:`~dagctl_dagster.execution.framework.StepGrant` its session hands it, and then
fails: a run is never green without a visible reason. The claim-aware executor counts the
step by that reason (``not_run_<reason>`` in the run summary) instead of as a failed model;
the Slack failure hook posts nothing for it (the run's own alert says why).

The ledger is per run and per run-worker process: the executor holds it while the run
executes; under Dagster's own executors the run's sessions hold it. Dagster's step failure
shows the message and the reason (the UI's failure metadata) as before; nothing reads the
reason back from there.

Example::

    ledger = NotRunLedger.of_run(run_id)
    ledger.record("shop__orders", NotRun(NotRunReason.CLAIM_LOST, "this run lost its claim on shop/orders"))
    NotRunLedger.find(run_id, "shop__orders").reason   # NotRunReason.CLAIM_LOST
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Any

import dagster as dg

from dagctl_dagster.names import NOT_RUN_REASON_KEY, NotRunReason


@dataclass(frozen=True)
class NotRun:
    """A step that ran nothing (more) of its models, and why, for the people reading the run."""

    reason: NotRunReason
    message: str

    def shown(self) -> dict[str, str]:
        """What the step's failure shows besides the message (its metadata in the UI)."""
        return {NOT_RUN_REASON_KEY: self.reason.value}

    def failure(self, **metadata: Any) -> dg.Failure:
        """The failure the step raises once the value is recorded: the message names the reason."""
        return dg.Failure(description=self.message, metadata={**self.shown(), **metadata})


class NotRunLedger:
    """The steps of one run that did not run, by step key; safe to use from any thread."""

    _runs: weakref.WeakValueDictionary[str, NotRunLedger] = weakref.WeakValueDictionary()
    _runs_lock = threading.Lock()

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._steps: dict[str, NotRun] = {}

    @classmethod
    def of_run(cls, run_id: str) -> NotRunLedger:
        """The run's ledger in this process, created on first use; it lives while someone
        (the executor, a session) holds it."""
        with cls._runs_lock:
            ledger = cls._runs.get(run_id)
            if ledger is None:
                ledger = cls._runs[run_id] = cls()
            return ledger

    @classmethod
    def find(cls, run_id: str, step_key: str) -> NotRun | None:
        """What the step recorded, if its run's ledger lives in this process."""
        with cls._runs_lock:
            ledger = cls._runs.get(run_id)
        return ledger.of(step_key) if ledger is not None else None

    def record(self, step_key: str, not_run: NotRun) -> None:
        with self._lock:
            self._steps[step_key] = not_run

    def of(self, step_key: str) -> NotRun | None:
        with self._lock:
            return self._steps.get(step_key)

    def forget(self, step_key: str) -> None:
        """A step starting (again, on a retry) has not been refused yet."""
        with self._lock:
            self._steps.pop(step_key, None)
