"""One run's claims on its models, and the pauses it read before claiming.

The run reads which of its models are paused, then claims the others in one batch before
any step starts. Per step it then knows: the models it runs, those another live run holds
(the step is skipped, naming the holder), those paused, and, for a multi-model step (a dbt
build), the models it leaves out. Before a step starts and before each later unit of work,
the claim is confirmed in the store (:class:`ClaimCheck`); a claim found lost is reported
once. Claims are released as models finish, in one store transaction per second, and all
of them at the end.

Example (inside the executor's loop)::

    claims = RunClaims(store, plan, models_by_step)
    yield from claims.claim()
    with claims.heartbeat(interval=20.0):
        if claims.still_holds(step_key): ...
        claims.finished(step_key)
        claims.release_finished()
    yield from claims.release_all()
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

from dagctl_dagster.execution import dagster_adapter as adapter

if TYPE_CHECKING:
    from dagctl_dagster.execution.claims import ClaimOwnership, ClaimStore, LeaseHeartbeat
    from dagctl_dagster.execution.pauses import Pause

RELEASE_INTERVAL_SECONDS = 1.0


class ClaimCheck:
    """Whether a step still holds its models' claims; asked from the step's own thread
    before each unit of work.

    The first question is answered by the confirmation the executor asked the store for
    just before it started the step; every later one asks the store.
    """

    def __init__(self, ownership: ClaimOwnership | None, models: Sequence[str]) -> None:
        self._ownership = ownership
        self._models = list(models)
        self._confirmed_at_start = ownership is not None

    def __call__(self) -> bool:
        if self._ownership is None:
            return True
        if self._confirmed_at_start:
            self._confirmed_at_start = False
            return True
        return self._ownership.holds(self._models)


class RunClaims:
    """The run's claims, pauses and models per step (see the module docstring)."""

    def __init__(self, store: ClaimStore, plan: adapter.PlanRun, models_by_step: Mapping[str, Sequence[str]]) -> None:
        self.store = store
        self._plan = plan
        self._models_by_step = {step_key: list(models) for step_key, models in models_by_step.items()}
        self._pauses: dict[str, Pause] = {}  # the run's paused models
        self._all_pauses: list[Pause] = []  # every paused model, of any project
        self._held_by_step: dict[str, dict[str, str]] = {}
        self._left_out_by_step: dict[str, dict[str, str]] = {}
        self.ownership: ClaimOwnership | None = None
        self._finished: list[str] = []
        self._last_release = 0.0

    # -- before any step -----------------------------------------------------------------

    def claim(self) -> Iterator[adapter.DagsterEvent]:
        """Reads the pauses, then claims every model not paused, in one batch."""
        from dagctl_dagster.execution.claims import ClaimOwnership

        models = sorted({m for ms in self._models_by_step.values() for m in ms})
        self._all_pauses = self._read_pauses()
        self._pauses = {p.model: p for p in self._all_pauses if p.model in set(models)}
        result = self.store.claim(
            self._plan.run_id, [m for m in models if m not in self._pauses], is_run_finished=self._is_run_finished
        )
        for step_key, step_models in self._models_by_step.items():
            holders = {m: result.held[m].run_id for m in step_models if m in result.held}
            if holders:
                self._held_by_step[step_key] = holders
        message = f"Claimed {len(result.won)} of {len(models)} models for run {self._plan.run_id}"
        if result.held:
            message += f"; {len(result.held)} held by other runs: " + ", ".join(
                f"{m} (run {c.run_id})" for m, c in sorted(result.held.items())
            )
        yield adapter.engine_event(
            self._plan.job_context, message, {"claimed": len(result.won), "held_elsewhere": len(result.held)}
        )
        self.ownership = ClaimOwnership(self.store, self._plan.run_id, result.won)
        self._left_out_by_step = self._left_out_of_multi_model_steps()

    def heartbeat(self, interval: float) -> LeaseHeartbeat:
        """Renews the run's leases while the block runs."""
        from dagctl_dagster.execution.claims import LeaseHeartbeat

        return LeaseHeartbeat(self.store, self._plan.run_id, interval=interval, ownership=self.ownership)

    def _is_run_finished(self, run_id: str) -> bool:
        run = self._plan.instance.get_run_by_id(run_id)
        return run is not None and run.is_finished

    def _read_pauses(self) -> list[Pause]:
        from dagctl_dagster.execution.claims import ClaimStoreError
        from dagctl_dagster.execution.pauses import PauseStore

        try:
            return PauseStore.of(self.store).list()
        except Exception as exc:  # the run cannot tell what is paused: it must not start anything
            raise ClaimStoreError(
                f"claim store {self.store.masked_url} failed: could not read paused models: {self.store.describe(exc)}"
            ) from None

    def _left_out_of_multi_model_steps(self) -> dict[str, dict[str, str]]:
        """Per multi-model step (a dbt build), the models it must leave out and why; a step
        none of whose models can run is skipped as a whole instead."""
        left_out: dict[str, dict[str, str]] = {}
        for step_key, models in self._models_by_step.items():
            reasons = {m: f"claimed by run {run_id}" for m, run_id in self._held_by_step.get(step_key, {}).items()}
            reasons |= {m: self._pauses[m].describe() for m in models if m in self._pauses}
            if reasons and len(reasons) < len(models):
                left_out[step_key] = reasons
        return left_out

    # -- per step ------------------------------------------------------------------------

    def models_of(self, step_key: str) -> list[str]:
        return list(self._models_by_step.get(step_key, []))

    def paused_of_projects(self, projects: frozenset[str]) -> dict[str, str]:
        """Every paused model of ``projects`` (in this run or not), with the pause's description."""
        return {p.model: p.describe() for p in self._all_pauses if p.project in projects}

    def paused_in(self, step_key: str) -> list[Pause]:
        return [self._pauses[m] for m in self._models_by_step.get(step_key, []) if m in self._pauses]

    def holders_in(self, step_key: str) -> dict[str, str]:
        """The step's models another live run holds, with that run's id."""
        return dict(self._held_by_step.get(step_key, {}))

    def left_out_of(self, step_key: str) -> dict[str, str]:
        """The models a multi-model step runs without, and why (after :meth:`narrow`)."""
        return dict(self._left_out_by_step.get(step_key, {}))

    def narrow(self, step_key: str) -> Generator[adapter.DagsterEvent, None, Mapping[str, str]]:
        """A multi-model step runs without the models it leaves out: they are neither its
        claims to check nor its models to release, and they are reported once, here.
        Returns the models left out now (none when already narrowed)."""
        reasons = self._left_out_by_step.get(step_key)
        if not reasons or not any(m in reasons for m in self._models_by_step.get(step_key, [])):
            return {}
        self._models_by_step[step_key] = [m for m in self._models_by_step[step_key] if m not in reasons]
        self._held_by_step.pop(step_key, None)
        listed = "; ".join(f"{m} ({why})" for m, why in sorted(reasons.items()))
        yield adapter.engine_event(
            self._plan.job_context,
            f"Leaving out of {step_key}: {listed}. Their downstream models in it are left out too; "
            "the next run does what is still due.",
            {"step": step_key, "left_out": len(reasons)},
        )
        return reasons

    def still_holds(self, step_key: str) -> bool:
        """Confirms the step's claims in the store, right before it starts."""
        return self.ownership is None or self.ownership.holds(self._models_by_step.get(step_key, []))

    def check_for(self, step_key: str) -> ClaimCheck:
        return ClaimCheck(self.ownership, self._models_by_step.get(step_key, []))

    def ownership_events(self) -> Iterator[adapter.DagsterEvent]:
        """Claims found lost, and renewals that failed, since the last call."""
        if self.ownership is None:
            return
        for report in self.ownership.reports():
            if report.lost:
                yield adapter.engine_event(
                    self._plan.job_context,
                    f"Run {self._plan.run_id} lost its claims on {', '.join(sorted(report.lost))}: released or "
                    "expired while this run could not renew them. No step of them starts; the run will "
                    "not be green.",
                    {"lost_claims": len(report.lost)},
                )
            if report.error:
                yield adapter.engine_event(
                    self._plan.job_context,
                    f"Could not renew this run's claims: {report.error}. Steps start only while the claims "
                    "can be confirmed; if they cannot be renewed within the lease, they are lost.",
                    {"claim_store_error": report.error},
                )

    # -- releasing -----------------------------------------------------------------------

    def finished(self, step_key: str) -> None:
        """The step is over (any outcome): its models' claims go with the next release."""
        self._finished.extend(self._models_by_step.get(step_key, []))

    def node_finished(self, step_key: str, model: str) -> None:
        """One model of a multi-model step (a dbt node) is built: its claim can go already."""
        if model in self._models_by_step.get(step_key, []) and model not in self._finished:
            self._finished.append(model)

    def is_multi_model(self, step_key: str) -> bool:
        return len(self._models_by_step.get(step_key, [])) > 1

    def release_finished(self) -> None:
        """One claim-store transaction for the models finished in the last second.

        A finished model's claim only matters to a run that starts meanwhile and wants the
        same model; a second's delay costs it nothing, a transaction per model costs this
        run a commit per model. Whatever is left is released when the run ends.
        """
        from dagctl_dagster.execution.claims import ClaimStoreError

        now = time.monotonic()
        if not self._finished or now - self._last_release < RELEASE_INTERVAL_SECONDS:
            return
        finished = list(self._finished)
        self._last_release = now
        try:
            self.store.release(self._plan.run_id, finished)
        except ClaimStoreError:  # retried next second; the leases expire meanwhile anyway
            return
        self._finished = self._finished[len(finished) :]
        if self.ownership is not None:
            self.ownership.released(finished)

    def release_all(self) -> Iterator[adapter.DagsterEvent]:
        """Releases every claim of the run, after its last step thread stopped."""
        from dagctl_dagster.execution.claims import ClaimStoreError

        try:
            self.store.release(self._plan.run_id)
        except ClaimStoreError as exc:
            yield adapter.engine_event(
                self._plan.job_context,
                f"Could not release this run's claims: {self.store.describe(exc)}. They become free "
                f"when their lease ends ({self.store.lease_seconds:.0f}s).",
            )
