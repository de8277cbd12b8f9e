"""A failed run is posted to Slack once: the first to claim it posts, nobody else does.

Two posters share the work (docs/alerts.md): the failure hook of a model step posts the first
model failure of a run at once, while the run goes on; the run-failure sensor posts every
failed run nobody has posted yet (steps that did not run, a failed first plan, plan and deploy
jobs, a dead run worker, "Materialize all" runs, which carry no hooks). The claim is the run
tag :data:`~dagctl_dagster.names.FAILURE_ALERTED_TAG`, written before the message leaves. The
hook writes it inside the run worker, before the run can end, so the sensor, which looks at
a run only once it has failed, always sees it.

All steps of a run run in one process (the claim-aware executor's threads, or Dagster's
in-process executor), so a process-wide lock makes "first" atomic among a run's steps.

Example::

    if claim_run_alert(context.instance, context.run_id, by=f"step {context.step_key}"):
        post(...)
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import dagster as dg

from dagctl_dagster.names import FAILURE_ALERTED_TAG

# Runs claimed in this process; a run worker sees one run, a code server a few.
_REMEMBERED = 1000
_lock = threading.Lock()
_claimed: OrderedDict[str, None] = OrderedDict()


def claim_run_alert(instance: dg.DagsterInstance, run_id: str, *, by: str) -> bool:
    """True for the first caller for ``run_id``, after the run is tagged as heard.

    False when the run was claimed already (in this process or, per its tag, anywhere), or
    when the tag could not be written: then nobody here posts and the sensor does later.
    """
    with _lock:
        if run_id in _claimed:
            return False
        run = instance.get_run_by_id(run_id)
        if run is None or was_heard(run):
            _remember(run_id)
            return False
        mark_heard(instance, run_id, by=by)
        _remember(run_id)
        return True


def mark_heard(instance: dg.DagsterInstance, run_id: str, *, by: str) -> None:
    # The value names the run: a retry or re-execution copies its parent's tags, and its own
    # failure must still be heard.
    instance.add_run_tags(run_id, {FAILURE_ALERTED_TAG: f"{run_id}: {by}"})


def alerted_by(run: dg.DagsterRun) -> str | None:
    """Who posted this run's failure (``step <key>`` or the sensor's name), if anyone did."""
    value = run.tags.get(FAILURE_ALERTED_TAG, "")
    prefix = f"{run.run_id}: "
    return value[len(prefix) :] if value.startswith(prefix) else None


def was_heard(run: dg.DagsterRun) -> bool:
    return alerted_by(run) is not None


def _remember(run_id: str) -> None:
    _claimed[run_id] = None
    while len(_claimed) > _REMEMBERED:
        _claimed.popitem(last=False)
