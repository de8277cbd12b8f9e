"""What the claim-aware executor may ask the framework (SQLMesh, dbt) behind a run's steps.

The executor knows models only as asset keys. A framework's per-run session subclasses
:class:`RunFramework`; the executor finds the run's sessions among its resources by that
type and asks them, on its own thread, the few things it must:

- ``prepare``: get ready before any step of these projects starts (wait for a finalized
  environment, apply a first plan, compute what is due) and say how many steps of these
  projects may run at once;
- ``stop_reason``: may a new step still start (has the environment been re-planned)?
- ``interrupt``: the run is being terminated: cancel running queries, start nothing new;
- ``thread_ending``: a step thread, reused from step to step, ends with the run.

Ownership before work: a framework asks ``holds_claims()`` (given to ``prepare``) before
each unit of work, so a run that lost a model's claim starts none of its work.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

_step_local = threading.local()


def left_out_models() -> Mapping[str, str]:
    """Models of the running multi-model step (a dbt build) that this run leaves out, with why.

    Asked from the step's own thread. The executor leaves out models claimed by another
    live run and paused models; the framework must also leave out everything downstream of
    them within the step (dbt: ``--exclude model+``).
    """
    return getattr(_step_local, "left_out", {})


def set_left_out_models(left_out: Mapping[str, str]) -> None:
    """Called by the executor on a step's thread before the step runs."""
    _step_local.left_out = dict(left_out)


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
    def prepare(self, should_stop: Callable[[], bool], holds_claims: Callable[[], bool]) -> Preparation:
        """Called once, before any of the projects' steps start; never raises.

        ``holds_claims()``, called from a step's thread before each unit of work (a batch),
        is False once the run no longer holds that step's claims: the step must then start
        nothing more.
        """

    @abc.abstractmethod
    def stop_reason(self) -> StopReason | None:
        """Asked before a step starts; ``None`` lets it start. Never raises."""

    @abc.abstractmethod
    def interrupt(self) -> None:
        """The run is terminating: start nothing new, cancel what runs. Never raises."""

    @abc.abstractmethod
    def thread_ending(self) -> None:
        """Called on each of the executor's step threads as it ends, after the run's last
        step: close what this thread opened (its connection or cursor). Never raises."""
