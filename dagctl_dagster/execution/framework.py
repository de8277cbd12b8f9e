"""What the claim-aware executor may ask the framework (SQLMesh, dbt) behind a run's steps,
and what it hands each step.

The executor knows models only as asset keys. A framework's per-run session subclasses
:class:`RunFramework`; the executor finds the run's sessions among its resources by that
type and asks them, on its own thread, the few things it must:

- ``prepare``: get ready before any step of these projects starts (wait for a finalized
  environment, apply a first plan, compute what is due) and say how many steps of these
  projects may run at once; :class:`RunSetup` carries the run's own bound on concurrent steps;
- ``start_step``: a step of these projects starts now, with this :class:`StepGrant`;
- ``stop_reason``: may a new step still start (has the environment been re-planned)?
- ``refusal``: may this step start (a model a failed plan left undeployed may not)?
- ``interrupt``: the run is being terminated: cancel running queries, start nothing new;
- ``thread_ending``: a step thread, reused from step to step, ends with the run.

A step body asks its session for its grant (:meth:`StepGrants.of`). Ownership before work:
the step asks ``grant.holds_claims()`` before each unit of work, so a run that lost a model's
claim starts none of its work. A multi-model step (a dbt build) leaves out
``grant.left_out`` and everything downstream of them. A step that runs nothing (more) of its
models for a reason other than a model failing raises ``grant.not_run(NotRun(...))``.
Under Dagster's own executors no grant comes: a step gets :meth:`StepGrant.ungranted`.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from dagctl_dagster.execution.not_run import NotRun, NotRunLedger

# The context a step body (an op, asset or asset check) gets from Dagster.
OpContext = dg.OpExecutionContext | dg.AssetExecutionContext | dg.AssetCheckExecutionContext


def _always_held() -> bool:
    return True


@dataclass(frozen=True)
class RunStep:
    """A step of the run that a session serves."""

    key: str
    tags: Mapping[str, str]
    models: tuple[str, ...]  # asset keys as ``a/b``


@dataclass(frozen=True)
class RunSetup:
    """What the executor tells each session before any of its steps starts."""

    should_stop: Callable[[], bool]
    # The run's bound on concurrent steps (executor config `max_concurrent`, else
    # MAX_CONCURRENT_MODELS); None under Dagster's own executors.
    max_concurrent: int | None = None
    # The run's steps this session serves, upstream first; empty under Dagster's own executors.
    steps: tuple[RunStep, ...] = ()
    # Every paused model of the session's projects (asset keys as ``a/b``; in this run or not),
    # with who paused it and why: work done before the steps (a first plan) leaves them out.
    paused: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Refusal:
    """Why a step must not start, as its session answers right before the step would."""

    not_run: NotRun
    # False: the step fails and its downstream is blocked. True: the step is skipped and each
    # downstream step is asked in turn, for one whose own outcome is what matters (the model a
    # plan failed on); only when another step of the run fails for the same cause.
    downstream_asked: bool = False


@dataclass(frozen=True)
class StepGrant:
    """What the executor hands a session for one step, right before the step starts."""

    step_key: str
    ledger: NotRunLedger
    # Models of a multi-model step this run leaves out (claimed elsewhere, paused), with why.
    left_out: Mapping[str, str] = field(default_factory=dict)
    # False once the run no longer holds the step's claims: the step must start nothing more.
    holds_claims: Callable[[], bool] = _always_held

    @classmethod
    def ungranted(cls, step_key: str, run_id: str) -> StepGrant:
        """A step no claim-aware executor started: nothing left out, no claims to check."""
        return cls(step_key, NotRunLedger.of_run(run_id))

    def not_run(self, not_run: NotRun, **metadata: str) -> dg.Failure:
        """Records why the step ran nothing (more); returns the failure the step raises."""
        self.ledger.record(self.step_key, not_run)
        return not_run.failure(**metadata)


class StepGrants:
    """A session's grants by step key; a step the executor granted nothing gets an ungranted
    one (and the session keeps the run's not-run ledger alive for the run)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._grants: dict[str, StepGrant] = {}

    def give(self, grant: StepGrant) -> None:
        with self._lock:
            self._grants[grant.step_key] = grant

    def of(self, context: OpContext) -> StepGrant:
        """The grant of the step ``context`` runs (asked from the step body)."""
        from dagctl_dagster.execution.dagster_adapter import run_and_step_of_op

        run_id, step_key = run_and_step_of_op(context)
        with self._lock:
            grant = self._grants.get(step_key)
            if grant is None:
                grant = self._grants[step_key] = StepGrant.ungranted(step_key, run_id)
            return grant


@dataclass(frozen=True)
class Preparation:
    """The outcome of :meth:`RunFramework.prepare`: a limit on concurrent steps, or an error."""

    concurrency_limit: int | None = None
    limit_reason: str | None = None
    error: str | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class StopReason:
    """Why no new step of a framework may start.

    ``expected`` stops (a plan changed the environment) skip the rest, which the next run
    does; unexpected ones (the environment vanished) fail the rest, so the run is not green.
    """

    message: str
    expected: bool


class RunFramework(abc.ABC):
    """One framework session of a run, serving the steps tagged with one of ``projects``."""

    @property
    @abc.abstractmethod
    def projects(self) -> frozenset[str]:
        """The dagctl project names whose model steps this session serves."""

    @property
    def working_dir(self) -> Path | None:
        """Where the engine's own CLI runs for these projects, if relative paths depend on it."""
        return None

    @abc.abstractmethod
    def prepare(self, setup: RunSetup) -> Preparation:
        """Called once, before any of the projects' steps start; never raises."""

    @abc.abstractmethod
    def start_step(self, grant: StepGrant) -> None:
        """A step of these projects starts now (called on the executor's thread, before the
        step's own thread runs it). Never raises."""

    @abc.abstractmethod
    def stop_reason(self) -> StopReason | None:
        """Asked before a step starts; ``None`` lets it start. Never raises."""

    def refusal(self, step_key: str) -> Refusal | None:
        """Asked before the step ``step_key`` starts (after ``stop_reason``); ``None`` lets it
        start. Never raises."""
        return None

    @abc.abstractmethod
    def interrupt(self) -> None:
        """The run is terminating: start nothing new, cancel what runs. Never raises."""

    @abc.abstractmethod
    def thread_ending(self) -> None:
        """Called on each of the executor's step threads as it ends, after the run's last
        step: close what this thread opened (its connection or cursor). Never raises."""
